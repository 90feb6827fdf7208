//! Node names numbered: each name the state meets is given a small number once, so the hot
//! paths that count or look up by node (a service's tally, the failover pass's spread over a
//! thousand services of a thousand instances) index a vector rather than hash a name.

use strata_core::NodeName;

use super::FastMap;

/// A node name's number in this process (dense from 0, never given to another name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeSlot(u32);

impl NodeSlot {
    /// Its place in a vector indexed by slot.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The numbers given so far. A name keeps its number for the life of the process (a node
/// removed and joined again counts as the one it was): a name costs about 60 bytes, so a
/// fleet that renames a million nodes between restarts of its leader holds 60 MB here.
#[derive(Debug, Default)]
pub(super) struct NodeSlots {
    by_name: FastMap<NodeName, NodeSlot>,
    names: Vec<NodeName>,
}

impl NodeSlots {
    /// `name`'s number (`None`: never met).
    pub(super) fn get(&self, name: &NodeName) -> Option<NodeSlot> {
        self.by_name.get(name).copied()
    }

    /// `name`'s number, given now if it has none.
    pub(super) fn intern(&mut self, name: &NodeName) -> NodeSlot {
        if let Some(slot) = self.by_name.get(name) {
            return *slot;
        }
        let slot = NodeSlot(self.names.len() as u32);
        self.names.push(name.clone());
        self.by_name.insert(name.clone(), slot);
        slot
    }

    /// The name numbered `slot`.
    pub(super) fn name(&self, slot: NodeSlot) -> &NodeName {
        &self.names[slot.index()]
    }

    /// How many numbers were given (one more than the highest).
    pub(super) fn len(&self) -> usize {
        self.names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_keeps_its_number_and_numbers_are_dense() {
        let mut slots = NodeSlots::default();
        let a = NodeName::new("a").unwrap();
        let b = NodeName::new("b").unwrap();
        assert_eq!(slots.get(&a), None);
        let first = slots.intern(&a);
        let second = slots.intern(&b);
        assert_eq!((first.index(), second.index()), (0, 1));
        assert_eq!(slots.intern(&a), first);
        assert_eq!(slots.get(&b), Some(second));
        assert_eq!(slots.name(second), &b);
        assert_eq!(slots.len(), 2);
    }
}
