//! `events::EventReceiver` on its own (outside a node): message-io's `Default` constructor.

use portnet::events::EventReceiver;
use std::time::Duration;

#[test]
fn default_receiver_receives_what_its_sender_sends() {
    let mut receiver = EventReceiver::<u32>::default();
    assert_eq!(receiver.try_receive(), None);
    let sender = receiver.sender().clone();
    std::thread::spawn(move || sender.send(7)).join().unwrap();
    receiver.sender().send_with_timer(9, Duration::from_millis(1));
    assert_eq!(receiver.receive_timeout(Duration::from_secs(10)), Some(7));
    assert_eq!(receiver.receive_timeout(Duration::from_secs(10)), Some(9));
}
