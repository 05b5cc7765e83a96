//! The process's descriptor limit (`RLIMIT_NOFILE`): raised to its hard limit at start, and the
//! number of ingress connections it leaves room for next to delivery connections, journal
//! files and the admin listener.

use rlimit::Resource;

/// Descriptors kept for everything but ingress connections, at the least.
const MIN_RESERVE: u64 = 256;
/// The default `max_connections` at most, however high the descriptor limit: it keeps the
/// memory bound of the README ("Ingress limits") sane.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Why the descriptor limit could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the descriptor limit (RLIMIT_NOFILE): {0}")]
pub struct DescriptorError(#[from] std::io::Error);

/// The descriptor limit the process runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorLimit {
    /// The soft limit now in force.
    pub limit: u64,
    /// The soft limit before it was raised, if it was.
    pub raised_from: Option<u64>,
}

/// Raises the soft descriptor limit to the hard limit (where the platform allows it) and
/// returns the limit in force. A failure to raise it keeps the old limit, with a warning.
pub fn raise_limit() -> Result<DescriptorLimit, DescriptorError> {
    let (soft, _hard) = rlimit::getrlimit(Resource::NOFILE)?;
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, soft, "could not raise the descriptor limit");
            soft
        }
    };
    Ok(DescriptorLimit {
        limit,
        raised_from: (limit > soft).then_some(soft),
    })
}

/// The most ingress connections `limit` descriptors leave room for: the limit minus a reserve
/// of a quarter of it (at least 256) for delivery connections, journal files and the admin
/// listener; half the limit when it is too small for that reserve.
pub fn connections_allowed(limit: u64) -> usize {
    let reserve = (limit / 4).max(MIN_RESERVE);
    let allowed = limit.saturating_sub(reserve).max(limit / 2).max(1);
    usize::try_from(allowed).unwrap_or(usize::MAX)
}

/// The `max_connections` in force: `configured`, lowered to what `limit` allows (the second
/// value says it was), or by default the smaller of what the limit allows and
/// [`DEFAULT_MAX_CONNECTIONS`].
pub fn max_connections(configured: Option<usize>, limit: u64) -> (usize, bool) {
    let allowed = connections_allowed(limit);
    match configured {
        Some(configured) if configured > allowed => (allowed, true),
        Some(configured) => (configured, false),
        None => (allowed.min(DEFAULT_MAX_CONNECTIONS), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_a_quarter_of_the_limit_and_at_least_256() {
        assert_eq!(connections_allowed(2048), 1536);
        assert_eq!(connections_allowed(1024), 768);
        assert_eq!(connections_allowed(65_536), 49_152);
        // Too small for the reserve: half of it.
        assert_eq!(connections_allowed(300), 150);
        assert_eq!(connections_allowed(1), 1);
    }

    #[test]
    fn a_configured_value_is_clamped_to_the_limit_and_the_default_capped() {
        assert_eq!(max_connections(None, 2048), (1536, false));
        assert_eq!(
            max_connections(None, 1 << 20),
            (DEFAULT_MAX_CONNECTIONS, false)
        );
        assert_eq!(max_connections(Some(100), 2048), (100, false));
        assert_eq!(max_connections(Some(5000), 2048), (1536, true));
    }

    #[test]
    fn raising_the_limit_never_lowers_it() {
        let (soft, hard) = rlimit::getrlimit(Resource::NOFILE).expect("readable");
        let raised = raise_limit().expect("readable");
        assert!(raised.limit >= soft && raised.limit <= hard, "{raised:?}");
    }
}
