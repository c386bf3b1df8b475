use std::sync::atomic::{AtomicUsize, Ordering};

/// Whether a resource was created by `listen` (local) or is a connection (remote).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ResourceType {
    /// A listener, created by `listen`.
    Local,
    /// A connection, created by `connect` or accepted by a listener.
    Remote,
}

/// Unique identifier of a network resource (a listener or a connection) in a node.
///
/// Its raw value packs the transport (adapter) id, the [`ResourceType`] and a per-transport
/// counter, as message-io's does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId {
    id: usize,
}

impl ResourceId {
    const ADAPTER_ID_POS: usize = 0;
    const RESOURCE_TYPE_POS: usize = 7;
    const BASE_VALUE_POS: usize = 8;

    const ADAPTER_ID_MASK: u8 = 0b0111_1111;
    const BASE_VALUE_MASK: usize = usize::MAX << Self::BASE_VALUE_POS;

    /// Largest base value an id can hold.
    pub const MAX_BASE_VALUE: usize = Self::BASE_VALUE_MASK >> Self::BASE_VALUE_POS;
    /// Largest adapter id an id can hold.
    pub const MAX_ADAPTER_ID: u8 = Self::ADAPTER_ID_MASK >> Self::ADAPTER_ID_POS;
    /// How many adapters ids can tell apart.
    pub const MAX_ADAPTERS: usize = Self::MAX_ADAPTER_ID as usize + 1;

    pub(crate) fn new(adapter_id: u8, resource_type: ResourceType, base_value: usize) -> Self {
        let resource_type = match resource_type {
            ResourceType::Local => 1 << Self::RESOURCE_TYPE_POS,
            ResourceType::Remote => 0,
        };
        Self {
            id: ((adapter_id & Self::ADAPTER_ID_MASK) as usize) << Self::ADAPTER_ID_POS
                | resource_type
                | ((base_value & Self::MAX_BASE_VALUE) << Self::BASE_VALUE_POS),
        }
    }

    /// The internal representation of this id.
    pub fn raw(&self) -> usize {
        self.id
    }

    /// Whether this id names a listener or a connection.
    pub fn resource_type(&self) -> ResourceType {
        if self.id & (1 << Self::RESOURCE_TYPE_POS) != 0 {
            ResourceType::Local
        } else {
            ResourceType::Remote
        }
    }

    /// Whether this id names a listener.
    pub fn is_local(&self) -> bool {
        self.resource_type() == ResourceType::Local
    }

    /// Whether this id names a connection.
    pub fn is_remote(&self) -> bool {
        self.resource_type() == ResourceType::Remote
    }

    /// The id of the transport ([`crate::network::Transport::id`]) that owns the resource.
    pub fn adapter_id(&self) -> u8 {
        (self.id & Self::ADAPTER_ID_MASK as usize) as u8
    }

    /// The per-transport part of the id.
    pub fn base_value(&self) -> usize {
        (self.id & Self::BASE_VALUE_MASK) >> Self::BASE_VALUE_POS
    }
}

impl From<usize> for ResourceId {
    fn from(raw: usize) -> Self {
        Self { id: raw }
    }
}

impl std::fmt::Display for ResourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let resource_type = match self.resource_type() {
            ResourceType::Local => "L",
            ResourceType::Remote => "R",
        };
        let (adapter, base) = (self.adapter_id(), self.base_value());
        if f.width().is_none() && f.precision().is_none() {
            // The common case writes straight through: no string to build.
            return write!(f, "{resource_type}.{adapter}.{base}");
        }
        f.pad(&format!("{resource_type}.{adapter}.{base}"))
    }
}

impl std::fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// Hands out fresh base values; shared by all transports of a node so ids never repeat.
#[derive(Debug, Default)]
pub(crate) struct ResourceIdGenerator {
    last: AtomicUsize,
}

impl ResourceIdGenerator {
    pub fn generate(&self, adapter_id: u8, resource_type: ResourceType) -> ResourceId {
        let base = self.last.fetch_add(1, Ordering::Relaxed) + 1;
        ResourceId::new(adapter_id, resource_type, base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let id = ResourceId::new(3, ResourceType::Local, 12345);
        assert_eq!(id.adapter_id(), 3);
        assert!(id.is_local());
        assert_eq!(id.base_value(), 12345);
        assert_eq!(ResourceId::from(id.raw()), id);
        let id = ResourceId::new(1, ResourceType::Remote, ResourceId::MAX_BASE_VALUE);
        assert!(id.is_remote());
        assert_eq!(id.base_value(), ResourceId::MAX_BASE_VALUE);
        assert_eq!(id.to_string(), format!("R.1.{}", ResourceId::MAX_BASE_VALUE));
    }
}
