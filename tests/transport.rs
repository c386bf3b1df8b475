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
