//! Nodes that find each other through a UDP multicast group, with no server.
//!
//! ```text
//! cargo run --example multicast             # three local members join, greet and leave
//! cargo run --example multicast alice       # join as `alice` until Ctrl-C; run more of these
//! cargo run --example multicast bob 10      # join as `bob` for 10 seconds
//! ```
//!
//! A member listens on the group's address (which joins the group), connects a `Udp`
//! endpoint to it for sending, and announces itself. Members that already know the group
//! answer a newcomer's `hello` with `here`, so everyone learns of everyone, then `bye` on
//! leaving. Messages are text: `hello <name>`, `here <name>`, `bye <name>`.

use portnet::network::{NetEvent, SendStatus, Transport};
use portnet::node::{self, NodeEvent};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

/// An administratively scoped group: it does not leave the local network.
const GROUP: &str = "239.255.0.1:5877";

enum Signal {
    Join,
    Leave,
}

fn main() -> ExitCode {
    env_logger::init();
    let Ok(group) = GROUP.parse::<SocketAddr>() else { return ExitCode::FAILURE };
    let args: Vec<String> = std::env::args().skip(1).collect();
    match &args[..] {
        [] => local_run(group),
        [name] => {
            member(name, group, Duration::ZERO, None);
            ExitCode::SUCCESS
        }
        [name, seconds] => match seconds.parse() {
            Ok(seconds) => {
                member(name, group, Duration::ZERO, Some(Duration::from_secs(seconds)));
                ExitCode::SUCCESS
            }
            Err(_) => usage(),
        },
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!("Usage: multicast [<name> [<seconds>]]");
    ExitCode::FAILURE
}

/// Three members in this process, joining one after another; each must hear the other two.
fn local_run(group: SocketAddr) -> ExitCode {
    let names: [&'static str; 3] = ["alice", "bob", "carol"];
    let members: Vec<_> = names
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let join_after = Duration::from_millis(100 * i as u64);
            let stay_for = Duration::from_millis(600);
            thread::spawn(move || member(name, group, join_after, Some(stay_for)))
        })
        .collect();
    let mut everyone_met = true;
    for (name, member) in names.iter().zip(members) {
        let heard = member.join().unwrap_or_default();
        let missing: Vec<_> = names.iter().filter(|n| *n != name && !heard.contains(**n)).collect();
        if !missing.is_empty() {
            println!("{name} never heard {missing:?}");
            everyone_met = false;
        }
    }
    if everyone_met {
        println!("Every member heard every other one.");
        ExitCode::SUCCESS
    } else {
        println!("Multicast needs a route for {GROUP} (usually the default route) and loopback.");
        ExitCode::FAILURE
    }
}

/// Joins `group` after `join_after`, prints who it hears, and leaves after `stay_for` (never
/// if `None`). Returns the names it heard.
fn member(
    name: &str,
    group: SocketAddr,
    join_after: Duration,
    stay_for: Option<Duration>,
) -> BTreeSet<String> {
    let (handler, listener) = node::split();
    handler.signals().send_with_timer(Signal::Join, join_after);
    if let Some(stay_for) = stay_for {
        handler.signals().send_with_timer(Signal::Leave, join_after + stay_for);
    }
    let mut group_endpoint = None;
    let mut present = BTreeSet::new();
    let mut heard = BTreeSet::new();
    let say = |endpoint, what: &str| match handler.network().send(endpoint, what.as_bytes()) {
        SendStatus::Sent => (),
        status => println!("[{name}] could not send {what:?}: {status:?}"),
    };
    listener.for_each(|event| match event {
        NodeEvent::Signal(Signal::Join) => {
            // Listening on a multicast address joins the group.
            if let Err(e) = handler.network().listen(Transport::Udp, group) {
                println!("[{name}] cannot join {group}: {e}");
                return handler.stop();
            }
            match handler.network().connect(Transport::Udp, group) {
                Ok((endpoint, _)) => group_endpoint = Some(endpoint),
                Err(e) => {
                    println!("[{name}] cannot send to {group}: {e}");
                    handler.stop();
                }
            }
        }
        NodeEvent::Network(NetEvent::Connected(endpoint, _)) => {
            println!("[{name}] joined {group}");
            say(endpoint, &format!("hello {name}"));
        }
        NodeEvent::Network(NetEvent::Message(_, data)) => {
            // Our own announcements come back too (multicast loop): skip them.
            let text = String::from_utf8_lossy(data);
            let Some((verb, who)) = text.split_once(' ') else { return };
            if who == name {
                return;
            }
            match verb {
                "hello" | "here" if present.insert(who.to_string()) => {
                    heard.insert(who.to_string());
                    let news = if verb == "hello" { "joined" } else { "is already here" };
                    println!("[{name}] {who} {news}");
                    if let (Some(endpoint), "hello") = (group_endpoint, verb) {
                        say(endpoint, &format!("here {name}"));
                    }
                }
                "bye" if present.remove(who) => println!("[{name}] {who} left"),
                _ => (),
            }
        }
        NodeEvent::Signal(Signal::Leave) => {
            println!("[{name}] leaving");
            if let Some(endpoint) = group_endpoint {
                say(endpoint, &format!("bye {name}"));
            }
            handler.stop();
        }
        NodeEvent::Network(_) => (), // Udp has no Accepted or Disconnected
    });
    heard
}
