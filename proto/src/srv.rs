//! RFC 2782 ordering of SRV (and URI) records: by priority, then by the
//! weighted random selection within a priority. Shared by the plugin (URI
//! and SRV records for wss URLs) and the proxy (SRV records of KDCs).

/// Orders records by priority (lowest first) and, within a priority, by
/// the RFC 2782 weighted random selection: each pick made with probability
/// proportional to weight (zero-weight records after the others, in answer
/// order).
/// `random` supplies uniform u32 values.
pub fn order_by_priority_and_weight<T: Clone>(
    records: &[T],
    key: impl Fn(&T) -> (u16, u16),
    mut random: impl FnMut() -> u32,
) -> Vec<T> {
    let mut sorted: Vec<&T> = records.iter().collect();
    sorted.sort_by_key(|r| key(r).0); // stable: answer order within a priority
    let mut out = Vec::with_capacity(records.len());
    let mut i = 0;
    while let Some(first) = sorted.get(i) {
        let prio = key(first).0;
        let mut group: Vec<&T> = sorted
            .get(i..)
            .unwrap_or_default()
            .iter()
            .take_while(|r| key(r).0 == prio)
            .copied()
            .collect();
        i += group.len();
        // Zero weights first, as RFC 2782 prescribes for the running sum.
        group.sort_by_key(|r| key(r).1 != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(key(r).1)).sum();
            let pick = if total == 0 {
                0
            } else {
                // A draw in [0, total) picks each record with probability
                // weight/total exactly (RFC 2782's draw in [0, total] would
                // give the first nonzero record one extra chance in
                // total + 1); zero weights are then picked only last.
                let target = random() % total;
                let mut sum = 0u32;
                group
                    .iter()
                    .position(|r| {
                        sum += u32::from(key(r).1);
                        sum > target
                    })
                    .unwrap_or(0)
            };
            out.push(group.remove(pick).clone());
        }
    }
    out
}

/// A uniformly distributed random u32 from the standard library's
/// per-process random hashing keys (no extra crate, no syscall per call
/// beyond the first).
pub fn random_u32() -> u32 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish() as u32
}
