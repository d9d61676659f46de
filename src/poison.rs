//! The poison latch: the first failed write or sync stops the channel until it is reopened.
//!
//! After a failed `fdatasync` the kernel may have dropped the dirty pages and cleared the error
//! (the "fsyncgate" behaviour of Linux), so a retry can succeed without the data ever reaching the
//! disk. tidegate therefore never retries: it latches the first failure here, every later
//! operation returns [`Error::Poisoned`], and reopening the channel replays from what is durable.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// Latches the first I/O failure.
#[derive(Debug, Default)]
pub(crate) struct Poison {
    poisoned: AtomicBool,
    cause: Mutex<Option<String>>,
}

impl Poison {
    /// Fails with `Poisoned` once poisoned. (Inlined: every put and append asks.)
    #[inline]
    pub(crate) fn check(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(self.poisoned_error());
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn poisoned_error(&self) -> Error {
        Error::Poisoned {
            cause: self.cause().unwrap_or_default(),
        }
    }

    /// Records `error` as the cause (the first one wins) and returns the `Poisoned` error to hand
    /// to the caller.
    pub(crate) fn poison(&self, error: &Error) -> Error {
        let mut cause = self.cause.lock();
        if cause.is_none() {
            tracing::error!(%error, "I/O failure: the channel is poisoned until it is reopened");
            *cause = Some(error.to_string());
        }
        self.poisoned.store(true, Ordering::Release);
        Error::Poisoned {
            cause: cause.clone().unwrap_or_default(),
        }
    }

    /// The cause, if poisoned.
    pub(crate) fn cause(&self) -> Option<String> {
        self.cause.lock().clone()
    }
}
