//! [`IdShift`]: how the owners of an image's files map to host ids when its containers run in
//! a user namespace.
//!
//! A container in a user namespace sees host id `base + N` as its id `N`. Its layers must be
//! owned so: the store unpacks a layer once per shift it is asked for (`layers/<hex>.ids-<base>-
//! <size>/`, beside the unshifted `layers/<hex>/`), as Docker's `userns-remap` keeps a layer
//! tree per remapped root. Ids past `size` have no host id and are refused, with how to fix it.

/// Image id `N` is host id `base + N`, for `N < size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IdShift {
    pub base: u32,
    pub size: u32,
}

impl IdShift {
    /// The host id of image id `id`, or `None` when the namespace does not map it.
    pub fn host_id(&self, id: u32) -> Option<u32> {
        (id < self.size)
            .then(|| self.base.checked_add(id))
            .flatten()
    }

    /// The suffix of a shifted layer's directory name.
    pub(crate) fn dir_suffix(&self) -> String {
        format!(".ids-{}-{}", self.base, self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids() {
        let shift = IdShift {
            base: 1_700_000_000,
            size: 65536,
        };
        let table = [
            (0, Some(1_700_000_000)),
            (1000, Some(1_700_001_000)),
            (65535, Some(1_700_065_535)),
            (65536, None),
            (u32::MAX, None),
        ];
        for (id, host) in table {
            assert_eq!(shift.host_id(id), host, "{id}");
        }
        let near_the_top = IdShift {
            base: u32::MAX - 10,
            size: 65536,
        };
        assert_eq!(near_the_top.host_id(10), Some(u32::MAX));
        assert_eq!(near_the_top.host_id(11), None);
        assert_eq!(shift.dir_suffix(), ".ids-1700000000-65536");
    }
}
