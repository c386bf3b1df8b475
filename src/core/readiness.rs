/// What a resource became ready for: message-io 0.19's `network::Readiness`, kept so that code
/// naming it compiles.
///
/// In message-io it was the argument of `network::adapter::Local::pending`/`Remote::pending`
/// (the poll told an adapter that a socket could be written or read). portnet has no public
/// adapter API yet, so nothing in portnet hands a `Readiness` out or takes one: each backend
/// reacts to its own poll events internally. A portable adapter API, when it comes, will use
/// this type for the same meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// The resource can be written to.
    Write,
    /// The resource has something to read (data, an incoming connection, or its end).
    Read,
}
