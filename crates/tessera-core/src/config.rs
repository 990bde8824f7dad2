//! Session policy settings, their defaults (`docs/concepts.md` gives the
//! reason for each) and their validation.

use std::num::{NonZeroU32, NonZeroUsize};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What to do when a request's client does not match the client that created the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BindingPolicy {
    /// Do not compare.
    Off,
    /// Emit a `binding_mismatch` event and carry on.
    #[default]
    Log,
    /// Emit the event and refuse the request (the session itself survives).
    Reject,
}

impl FromStr for BindingPolicy {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(Self::Off),
            "log" => Ok(Self::Log),
            "reject" => Ok(Self::Reject),
            other => Err(ConfigError::UnknownBindingPolicy(other.to_owned())),
        }
    }
}

/// Largest subject, in bytes.
pub const DEFAULT_MAX_SUBJECT_BYTES: usize = 256;
/// Largest session data, in bytes of compact JSON.
pub const DEFAULT_MAX_DATA_BYTES: usize = 64 * 1024;

/// Every policy setting of a [`SessionManager`](crate::SessionManager),
/// as [`SessionManager::config`](crate::SessionManager::config) reports
/// them. Set them through [`SessionManager::builder`](crate::SessionManager::builder),
/// which derives the settings left out from those given.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Idle timeout: the session dies this long after its last use (default 30 min).
    pub idle_timeout: Duration,
    /// Idle timeout of a session nobody has signed in to (default 10 min,
    /// at most the idle timeout); a sign-in gives the session the full one.
    pub anonymous_idle_timeout: Duration,
    /// Anonymous sessions one client IP (IPv6: one /64) may create per
    /// minute (default 60; `None`: no cap). Sessions created without a
    /// client IP count only against the global cap.
    pub anonymous_per_ip_per_minute: Option<NonZeroU32>,
    /// Anonymous sessions all clients together may create per minute
    /// (default 20 000; `None`: no cap), which bounds how fast a crowd of
    /// addresses can fill the store.
    pub anonymous_per_minute: Option<NonZeroU32>,
    /// Absolute timeout: the session dies this long after creation (default 12 h).
    pub absolute_timeout: Duration,
    /// Validation rotates a token older than this (default 15 min).
    pub renew_after: Duration,
    /// How long a token rotated away by renewal or rotate still resolves
    /// once its successor has been presented (default 10 s).
    pub rotation_grace: Duration,
    /// How long a token rotated away by renewal or rotate keeps working
    /// while its successor has not been presented yet (a response lost on
    /// its way, a proxy that dropped `Set-Cookie`); each use gets the
    /// successor again (default 5 min).
    pub renewal_delivery_window: Duration,
    /// Validation writes the idle deadline only when it is older than this (default 60 s).
    pub touch_after: Duration,
    /// Client binding policy (default `log`).
    pub binding: BindingPolicy,
    /// Sessions one subject may hold; logging in beyond it ends the oldest (default none).
    pub max_sessions_per_subject: Option<NonZeroUsize>,
    /// Longest subject in bytes (default 256).
    pub max_subject_bytes: usize,
    /// Largest session data in bytes of compact JSON (default 64 KiB).
    pub max_data_bytes: usize,
    /// Invalid tokens from one IP within `guessing_window` that count as guessing (default 20).
    pub guessing_threshold: u32,
    /// The window for counting invalid tokens per IP (default 60 s).
    pub guessing_window: Duration,
    /// How long validation may use a cached global revocation epoch
    /// (default 1 s): a revoke-all on another node ends sessions here
    /// within this time. New sessions always read the epoch fresh.
    pub epoch_refresh: Duration,
    /// Sealed sessions over a store whose revocation epochs do not
    /// survive a restart (default refused: see
    /// [`SessionManagerBuilder::allow_volatile_epochs`](crate::SessionManagerBuilder::allow_volatile_epochs)).
    pub allow_volatile_epochs: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            anonymous_idle_timeout: Duration::from_secs(10 * 60),
            anonymous_per_ip_per_minute: NonZeroU32::new(60),
            anonymous_per_minute: NonZeroU32::new(20_000),
            absolute_timeout: Duration::from_secs(12 * 60 * 60),
            renew_after: Duration::from_secs(15 * 60),
            rotation_grace: Duration::from_secs(10),
            renewal_delivery_window: Duration::from_secs(5 * 60),
            touch_after: Duration::from_secs(60),
            binding: BindingPolicy::Log,
            max_sessions_per_subject: None,
            max_subject_bytes: DEFAULT_MAX_SUBJECT_BYTES,
            max_data_bytes: DEFAULT_MAX_DATA_BYTES,
            guessing_threshold: 20,
            guessing_window: Duration::from_secs(60),
            epoch_refresh: Duration::from_secs(1),
            allow_volatile_epochs: false,
        }
    }
}

/// A configuration that makes no sense, refused when the manager is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    #[error("{setting} must be longer than zero")]
    Zero {
        /// The setting's name.
        setting: &'static str,
    },
    /// The idle timeout exceeds the absolute timeout.
    #[error(
        "idle_timeout ({idle:?}) is longer than absolute_timeout ({absolute:?}); it would never apply"
    )]
    IdleLongerThanAbsolute {
        /// The idle timeout.
        idle: Duration,
        /// The absolute timeout.
        absolute: Duration,
    },
    /// The rotation grace is not shorter than the renewal interval.
    #[error(
        "rotation_grace ({grace:?}) must be shorter than renew_after ({renew:?}), or old tokens would live on through every renewal"
    )]
    GraceLongerThanRenewal {
        /// The rotation grace.
        grace: Duration,
        /// The renewal interval.
        renew: Duration,
    },
    /// Touch granularity is not shorter than the idle timeout.
    #[error(
        "touch_after ({touch:?}) must be shorter than {setting} ({idle:?}), or active sessions would time out"
    )]
    TouchNotShorterThanIdle {
        /// The touch granularity.
        touch: Duration,
        /// `idle_timeout` or `anonymous_idle_timeout`.
        setting: &'static str,
        /// That timeout.
        idle: Duration,
    },
    /// The delivery window is shorter than the grace.
    #[error("renewal_delivery_window ({window:?}) must be at least rotation_grace ({grace:?})")]
    DeliveryWindowShorterThanGrace {
        /// The delivery window.
        window: Duration,
        /// The rotation grace.
        grace: Duration,
    },
    /// A size limit of zero.
    #[error("{setting} must be at least 1")]
    ZeroLimit {
        /// The setting's name.
        setting: &'static str,
    },
    /// Sealed sessions over a store that loses its revocation epochs at a restart.
    #[error(
        "sealed sessions are revoked through epochs kept in the store, and this store loses them when it restarts (a memory store, or Redis without persistence): every sealed session would end at each restart. Use a persistent store for the epochs, or accept that with allow_volatile_epochs()"
    )]
    VolatileEpochs,
    /// A binding policy name that is not `off`, `log` or `reject`.
    #[error("unknown binding policy `{0}`; use off, log or reject")]
    UnknownBindingPolicy(String),
}

impl SessionConfig {
    /// Checks that the settings make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (setting, value) in [
            ("idle_timeout", self.idle_timeout),
            ("anonymous_idle_timeout", self.anonymous_idle_timeout),
            ("absolute_timeout", self.absolute_timeout),
            ("renew_after", self.renew_after),
            ("guessing_window", self.guessing_window),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero { setting });
            }
        }
        if self.idle_timeout > self.absolute_timeout {
            return Err(ConfigError::IdleLongerThanAbsolute {
                idle: self.idle_timeout,
                absolute: self.absolute_timeout,
            });
        }
        if self.rotation_grace >= self.renew_after {
            return Err(ConfigError::GraceLongerThanRenewal {
                grace: self.rotation_grace,
                renew: self.renew_after,
            });
        }
        if self.renewal_delivery_window < self.rotation_grace {
            return Err(ConfigError::DeliveryWindowShorterThanGrace {
                window: self.renewal_delivery_window,
                grace: self.rotation_grace,
            });
        }
        for (setting, idle) in [
            ("idle_timeout", self.idle_timeout),
            ("anonymous_idle_timeout", self.anonymous_idle_timeout),
        ] {
            if self.touch_after >= idle {
                return Err(ConfigError::TouchNotShorterThanIdle {
                    touch: self.touch_after,
                    setting,
                    idle,
                });
            }
        }
        for (setting, value) in [
            ("max_subject_bytes", self.max_subject_bytes),
            ("max_data_bytes", self.max_data_bytes),
            ("guessing_threshold", self.guessing_threshold as usize),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroLimit { setting });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_design_values_and_valid() {
        let config = SessionConfig::default();
        assert_eq!(config.idle_timeout, Duration::from_secs(1800));
        assert_eq!(config.absolute_timeout, Duration::from_secs(43200));
        assert_eq!(config.renew_after, Duration::from_secs(900));
        assert_eq!(config.rotation_grace, Duration::from_secs(10));
        assert_eq!(config.touch_after, Duration::from_secs(60));
        assert_eq!(config.binding, BindingPolicy::Log);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn nonsense_is_refused_with_the_setting_named() {
        let zero = SessionConfig {
            idle_timeout: Duration::ZERO,
            ..SessionConfig::default()
        };
        assert_eq!(
            zero.validate(),
            Err(ConfigError::Zero {
                setting: "idle_timeout"
            })
        );
        let idle_long = SessionConfig {
            idle_timeout: Duration::from_secs(100_000),
            ..SessionConfig::default()
        };
        assert!(matches!(
            idle_long.validate(),
            Err(ConfigError::IdleLongerThanAbsolute { .. })
        ));
        let grace_long = SessionConfig {
            rotation_grace: Duration::from_secs(900),
            ..SessionConfig::default()
        };
        assert!(matches!(
            grace_long.validate(),
            Err(ConfigError::GraceLongerThanRenewal { .. })
        ));
        assert!("maybe".parse::<BindingPolicy>().is_err());
        assert_eq!("reject".parse::<BindingPolicy>(), Ok(BindingPolicy::Reject));
    }
}
