//! `RemoteAddr`: its serde form is message-io's, so stored or exchanged addresses read back.

use portnet::network::RemoteAddr;

#[test]
fn serde_form_is_message_ios() {
    let socket: std::net::SocketAddr = "127.0.0.1:3042".parse().unwrap();
    let cases = [
        (RemoteAddr::Socket(socket), message_io::network::RemoteAddr::Socket(socket)),
        (
            RemoteAddr::Str("ws://localhost:80/chat".into()),
            message_io::network::RemoteAddr::Str("ws://localhost:80/chat".into()),
        ),
    ];
    for (ours, theirs) in cases {
        let json = serde_json::to_string(&theirs).unwrap();
        assert_eq!(serde_json::to_string(&ours).unwrap(), json);
        assert_eq!(serde_json::from_str::<RemoteAddr>(&json).unwrap(), ours);
    }
}
