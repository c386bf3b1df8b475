//! `Transport`: ids, the list of transports, and the derives message-io users rely on
//! (serde's `Serialize`/`Deserialize`, strum's `EnumIter`), checked against message-io 0.19.

use portnet::network::Transport;
use strum::IntoEnumIterator;

/// message-io's transport of the same name.
fn message_io_twin(transport: Transport) -> message_io::network::Transport {
    use message_io::network::Transport as M;
    match transport {
        Transport::Tcp => M::Tcp,
        Transport::FramedTcp => M::FramedTcp,
        Transport::Udp => M::Udp,
        Transport::Ws => M::Ws,
        // Without the `adapter` feature this match is exhaustive as message-io's would be.
        #[cfg(feature = "adapter")]
        Transport::Custom(_) => unreachable!("a mounted transport has no twin in message-io"),
    }
}

#[test]
fn ids_are_message_ios_and_round_trip() {
    for transport in Transport::ALL {
        assert_eq!(transport.id(), message_io_twin(transport).id(), "{transport}");
        assert_eq!(Transport::try_from_id(transport.id()), Some(transport));
        assert_eq!(Transport::from(transport.id()), transport);
    }
    assert_eq!(Transport::try_from_id(4), None);
    assert_eq!(Transport::try_from_id(u8::MAX), None);
}

#[test]
fn an_unknown_id_does_not_panic() {
    // message-io panics here; portnet maps it to the first transport of the build.
    assert_eq!(Transport::from(200), Transport::ALL[0]);
}

#[test]
fn strum_iterates_every_transport_in_id_order() {
    let iterated: Vec<Transport> = Transport::iter().collect();
    assert_eq!(iterated, Transport::ALL);
    let message_io: Vec<u8> = message_io::network::Transport::iter().map(|t| t.id()).collect();
    let portnet: Vec<u8> = iterated.iter().map(|t| t.id()).collect();
    assert_eq!(portnet, message_io);
}

#[test]
fn serde_form_is_message_ios() {
    for transport in Transport::ALL {
        let ours = serde_json::to_string(&transport).unwrap();
        let theirs = serde_json::to_string(&message_io_twin(transport)).unwrap();
        assert_eq!(ours, theirs, "{transport}");
        let back: Transport = serde_json::from_str(&theirs).unwrap();
        assert_eq!(back, transport);
    }
    let err = serde_json::from_str::<Transport>("\"Quic\"").unwrap_err();
    assert!(err.to_string().contains("unknown variant"), "{err}");
}

#[test]
fn display_and_properties_match_message_io() {
    for transport in Transport::ALL {
        let twin = message_io_twin(transport);
        assert_eq!(transport.to_string(), twin.to_string());
        assert_eq!(transport.is_connection_oriented(), twin.is_connection_oriented());
        assert_eq!(transport.is_packet_based(), twin.is_packet_based());
    }
}

#[cfg(feature = "adapter")]
#[test]
fn a_mounted_transport_is_not_a_built_in() {
    let (network, _processor) = portnet::network::split();
    let custom = network.mount(Nothing).unwrap();
    let id = custom.adapter_id().expect("a mounted transport has an adapter id");
    assert_eq!(custom.id(), id.get());
    assert_eq!(custom.id(), portnet::adapter::AdapterId::FIRST);
    assert!(!Transport::ALL.contains(&custom));
    assert!(Transport::iter().all(|t| t.adapter_id().is_none()));
    assert_eq!(Transport::try_from_id(custom.id()), None);
    assert_eq!(custom.to_string(), "Custom(4)");
    assert!(custom.is_connection_oriented() && custom.is_packet_based());
    let json = serde_json::to_string(&custom).unwrap();
    assert_eq!(json, r#"{"Custom":4}"#);
    assert_eq!(serde_json::from_str::<Transport>(&json).unwrap(), custom);
    // No built-in's id, nor one beyond what a resource id holds, passes for a mounted one.
    assert!(serde_json::from_str::<Transport>(r#"{"Custom":1}"#).is_err());
    assert!(serde_json::from_str::<Transport>(r#"{"Custom":128}"#).is_err());
}

/// A protocol that frames nothing, to mount.
#[cfg(feature = "adapter")]
struct Nothing;

#[cfg(feature = "adapter")]
impl portnet::adapter::StreamProtocol for Nothing {
    type Decoder = Nothing;

    fn decoder(&self, _side: portnet::adapter::Side) -> Nothing {
        Nothing
    }

    fn encode(
        &self,
        _message: &[u8],
        _frame: &mut portnet::adapter::Frame,
    ) -> Result<(), portnet::adapter::SendError> {
        Ok(())
    }
}

#[cfg(feature = "adapter")]
impl portnet::adapter::Decoder for Nothing {
    fn decode(
        &mut self,
        input: &[u8],
        io: &mut portnet::adapter::Io<'_>,
    ) -> Result<(), portnet::adapter::ProtocolError> {
        io.deliver(input);
        Ok(())
    }
}
