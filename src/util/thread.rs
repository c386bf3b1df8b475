//! Named threads whose names nest, kept at message-io's path (`util::thread`) with its API.
//!
//! A [`NamespacedThread`] spawned from a thread named `node` with the name `worker` is named
//! `node/worker`, so logs and panic messages say which thread started which. Dropping it joins
//! the thread: a scope cannot end while the thread it started still runs.
//!
//! ```
//! use portnet::util::thread::NamespacedThread;
//!
//! let mut outer = NamespacedThread::spawn("outer", || {
//!     let mut inner = NamespacedThread::spawn("inner", || {
//!         std::thread::current().name().map(String::from)
//!     });
//!     inner.join()
//! });
//! // The doctest's own thread has a name of its own, so compare the end only.
//! assert!(outer.join().unwrap().ends_with("/outer/inner"));
//! assert_eq!(outer.try_join(), None); // joined already
//! ```

use std::thread::{self, JoinHandle};

/// The message a [`NamespacedThread::join`] panics with when the joined thread panicked: the
/// first panic, printed before it, is the one to read. (message-io's text, word for word.)
pub const OTHER_THREAD_ERR: &str = "Avoid this 'panicked_at' error. \
                                   This error is shown because other thread has panicked \
                                   You can safety skip this error.";

/// A thread like [`std::thread::spawn`]'s, named `{spawning thread's name}/{name}`, and
/// joined when dropped.
///
/// The join propagates a panic of the thread as a panic of the joining thread (with
/// [`OTHER_THREAD_ERR`]), so a test that joins sees its helper thread's failure.
pub struct NamespacedThread<T: Send + 'static> {
    namespace: String,
    join_handle: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> NamespacedThread<T> {
    /// Spawns `f` on a new thread named `{current thread's name}/{name}` (an unnamed current
    /// thread contributes an empty name: `/{name}`).
    ///
    /// # Panics
    ///
    /// If the operating system cannot create a thread, as [`std::thread::spawn`] does. A NUL
    /// byte in `name`, which a thread name cannot hold, is replaced by `\u{FFFD}` rather than
    /// panicking.
    pub fn spawn<F>(name: &str, f: F) -> Self
    where
        F: FnOnce() -> T,
        F: Send + 'static,
    {
        let parent = thread::current().name().unwrap_or("").replace('\0', "\u{FFFD}");
        let namespace = format!("{parent}/{}", name.replace('\0', "\u{FFFD}"));
        let thread_namespace = namespace.clone();
        let join_handle = thread::Builder::new()
            .name(namespace.clone())
            .spawn(move || {
                log::trace!("Thread [{thread_namespace}] spawned");
                f()
            })
            .unwrap_or_else(|e| panic!("portnet: cannot spawn thread [{namespace}]: {e}"));
        NamespacedThread { namespace, join_handle: Some(join_handle) }
    }

    /// Waits for the thread to finish and returns what it returned.
    ///
    /// # Panics
    ///
    /// If the thread panicked (with [`OTHER_THREAD_ERR`]), or if it was joined already (use
    /// [`NamespacedThread::try_join`] when that can happen).
    pub fn join(&mut self) -> T {
        let Some(join_handle) = self.join_handle.take() else {
            panic!("portnet: thread [{}] was joined already", self.namespace);
        };
        log::trace!("Join thread [{}] ...", self.namespace);
        let content = join_handle.join().expect(OTHER_THREAD_ERR);
        log::trace!("Joined thread [{}]", self.namespace);
        content
    }

    /// Waits for the thread to finish: `Some` with what it returned the first time, `None` if
    /// it was joined already.
    ///
    /// # Panics
    ///
    /// If the thread panicked, as [`NamespacedThread::join`].
    pub fn try_join(&mut self) -> Option<T> {
        if self.join_handle.is_some() {
            return Some(self.join());
        }
        None
    }
}

impl<T: Send + 'static> Drop for NamespacedThread<T> {
    /// Joins the thread if it was not joined, panicking if it panicked — except while this
    /// thread is already unwinding (a failed assertion in the spawning scope): then it waits for
    /// the thread without a second panic, which would abort the process.
    fn drop(&mut self) {
        if thread::panicking() {
            if let Some(join_handle) = self.join_handle.take() {
                let _ = join_handle.join();
            }
            return;
        }
        self.try_join();
    }
}
