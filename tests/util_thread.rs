//! `util::thread::NamespacedThread`: message-io 0.19's named, join-on-drop thread.

use portnet::util::thread::{NamespacedThread, OTHER_THREAD_ERR};
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::Duration;

mod util;
use util::AbortAfter;

const LIMIT: Duration = Duration::from_secs(30);

/// The name of a thread spawned from `parent_name`'s thread, as seen from inside it.
fn child_name_under(parent_name: &str) -> String {
    let parent = std::thread::Builder::new().name(parent_name.into());
    parent
        .spawn(|| {
            NamespacedThread::spawn("child", || std::thread::current().name().map(String::from))
                .join()
                .expect("a namespaced thread has a name")
        })
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn names_nest_under_the_spawning_thread() {
    let _guard = AbortAfter::start("names_nest_under_the_spawning_thread", LIMIT);
    assert_eq!(child_name_under("node"), "node/child");
    let nested = std::thread::Builder::new()
        .name("a".into())
        .spawn(|| {
            NamespacedThread::spawn("b", || {
                NamespacedThread::spawn("c", || std::thread::current().name().map(String::from))
                    .join()
            })
            .join()
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(nested.as_deref(), Some("a/b/c"));
}

#[test]
fn a_nul_byte_in_the_name_does_not_panic() {
    let _guard = AbortAfter::start("a_nul_byte_in_the_name_does_not_panic", LIMIT);
    let name = NamespacedThread::spawn("x\0y", || std::thread::current().name().map(String::from))
        .join()
        .unwrap();
    assert!(name.ends_with("/x\u{FFFD}y"), "{name}");
}

#[test]
fn join_returns_the_result_and_try_join_then_none() {
    let _guard = AbortAfter::start("join_returns_the_result_and_try_join_then_none", LIMIT);
    let (go, wait) = mpsc::channel::<()>();
    let mut thread = NamespacedThread::spawn("worker", move || {
        wait.recv().unwrap();
        "result"
    });
    go.send(()).unwrap();
    assert_eq!(thread.join(), "result");
    assert_eq!(thread.try_join(), None);

    let mut unjoined = NamespacedThread::spawn("worker", || 7);
    assert_eq!(unjoined.try_join(), Some(7));
    assert_eq!(unjoined.try_join(), None);
}

#[test]
fn drop_waits_for_the_thread() {
    let _guard = AbortAfter::start("drop_waits_for_the_thread", LIMIT);
    let (done_tx, done_rx) = mpsc::channel();
    let (go, wait) = mpsc::channel::<()>();
    let thread = NamespacedThread::spawn("worker", move || {
        wait.recv().unwrap();
        done_tx.send("finished").unwrap();
    });
    go.send(()).unwrap();
    drop(thread);
    // Without the join in drop, the thread could still be running here.
    assert_eq!(done_rx.try_recv(), Ok("finished"));
}

#[test]
fn join_propagates_the_threads_panic() {
    let _guard = AbortAfter::start("join_propagates_the_threads_panic", LIMIT);
    let mut thread = NamespacedThread::spawn("failing", || -> u32 { panic!("helper failed") });
    let joined = panic::catch_unwind(AssertUnwindSafe(|| thread.join()));
    let message = joined.expect_err("join must panic when the thread panicked");
    let text = message.downcast_ref::<String>().map(String::as_str).unwrap_or_default();
    assert!(text.contains(OTHER_THREAD_ERR), "{text:?}");
}

#[test]
fn joining_twice_panics_with_a_message() {
    let _guard = AbortAfter::start("joining_twice_panics_with_a_message", LIMIT);
    let mut thread = NamespacedThread::spawn("worker", || ());
    thread.join();
    let again = panic::catch_unwind(AssertUnwindSafe(|| thread.join()));
    let message = again.expect_err("a second join must panic");
    let text = message.downcast_ref::<String>().map(String::as_str).unwrap_or_default();
    assert!(text.contains("joined already"), "{text:?}");
}

#[test]
fn dropping_while_unwinding_joins_without_aborting() {
    let _guard = AbortAfter::start("dropping_while_unwinding_joins_without_aborting", LIMIT);
    let (done_tx, done_rx) = mpsc::channel();
    let unwound = panic::catch_unwind(move || {
        let _failing = NamespacedThread::spawn("failing", || panic!("helper failed"));
        let _working = NamespacedThread::spawn("working", move || done_tx.send(()).unwrap());
        panic!("the spawning scope failed");
    });
    // Reaching this line at all proves there was no double panic (that aborts the process).
    assert!(unwound.is_err());
    assert_eq!(done_rx.try_recv(), Ok(()), "the drop joined the working thread");
}
