//! Which input rows share a key, which row of each key is sent and in what order, and how the
//! rows that come back (each tagged with its input position) fill the results.

use crate::error::{Error, Result};
use crate::spec::{DuplicateKeys, Outcome};

/// The rows of one call, arranged by key.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Groups {
    /// The input positions of the rows sent, one per key, in key order.
    pub(crate) sent: Vec<usize>,
    /// The input positions of the rows whose key has a NULL part (they never conflict), in
    /// input order.
    pub(crate) unkeyed: Vec<usize>,
    /// For each input position, the position of the row whose result it gets.
    pub(crate) representative: Vec<usize>,
}

/// Arranges `len` input rows from the key rank of each keyed row: `(input position, rank)`,
/// ranks dense from 1 in key order, equal for rows PostgreSQL considers the same key. Rows
/// without a rank have a NULL in their key. Two rows of one rank are an
/// [`Error::DuplicateConflictKey`] without a `policy`.
pub(crate) fn group(
    len: usize,
    ranks: impl IntoIterator<Item = (usize, u64)>,
    policy: Option<DuplicateKeys>,
) -> Result<Groups> {
    // Input positions and ranks as u32 (statements carry positions as int4): a quarter of the
    // memory of `Option<usize>` on a million rows.
    const NONE: u32 = u32::MAX;
    let too_many = || Error::unsupported(format!("{len} rows in one call"));
    if u32::try_from(len).map_or(true, |len| len == NONE) {
        return Err(too_many());
    }
    let mut rank_of: Vec<u32> = vec![NONE; len];
    let mut keys = 0;
    for (position, rank) in ranks {
        let rank = usize::try_from(rank)
            .ok()
            .and_then(|r| r.checked_sub(1))
            .ok_or_else(|| Error::internal(format!("key rank {rank} is not positive")))?;
        let slot = rank_of
            .get_mut(position)
            .ok_or_else(|| Error::internal(format!("input position {position} out of range")))?;
        *slot = u32::try_from(rank).map_err(|_| too_many())?;
        keys = keys.max(rank + 1);
    }
    let mut chosen: Vec<u32> = vec![NONE; keys];
    let mut unkeyed = Vec::new();
    for (position, &rank) in rank_of.iter().enumerate() {
        if rank == NONE {
            unkeyed.push(position);
            continue;
        }
        let slot = &mut chosen[rank as usize];
        match (*slot, policy) {
            (NONE, _) | (_, Some(DuplicateKeys::KeepLast)) => *slot = position as u32,
            (_, Some(DuplicateKeys::KeepFirst)) => {}
            (first, None) => {
                return Err(Error::DuplicateConflictKey {
                    first: first as usize,
                    duplicate: position,
                })
            }
        }
    }
    let sent: Vec<usize> = chosen
        .iter()
        .filter(|&&p| p != NONE)
        .map(|&p| p as usize)
        .collect();
    if sent.len() != keys {
        return Err(Error::internal("key ranks are not dense"));
    }
    let representative = rank_of
        .iter()
        .enumerate()
        .map(|(position, &rank)| match rank {
            NONE => position,
            rank => chosen[rank as usize] as usize,
        })
        .collect();
    Ok(Groups {
        sent,
        unkeyed,
        representative,
    })
}

/// The conflict keys of a call's rows as bytes, in one buffer: row `i`'s key is
/// `bytes[spans[i]]`, `None` when it has a NULL part.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ByteKeys {
    pub(crate) bytes: Vec<u8>,
    pub(crate) spans: Vec<Option<std::ops::Range<usize>>>,
}

impl ByteKeys {
    /// Starts the next row's key.
    pub(crate) fn start(&mut self) {
        let at = self.bytes.len();
        self.spans.push(Some(at..at));
    }

    /// Ends the current row's key: `null` when it has a NULL part.
    pub(crate) fn end(&mut self, null: bool) {
        let end = self.bytes.len();
        if let Some(span) = self.spans.last_mut() {
            match span {
                Some(range) if !null => range.end = end,
                _ => {
                    self.bytes.truncate(span.as_ref().map_or(end, |r| r.start));
                    *span = None;
                }
            }
        }
    }

    /// Appends the keys of the rows after this one's.
    pub(crate) fn append(&mut self, other: ByteKeys) {
        let offset = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes);
        self.spans.extend(
            other
                .spans
                .into_iter()
                .map(|span| span.map(|r| r.start + offset..r.end + offset)),
        );
    }

    fn key(&self, row: usize) -> Option<&[u8]> {
        self.spans[row].clone().map(|range| &self.bytes[range])
    }
}

/// Dense ranks of byte keys, for keys whose bytes compare as PostgreSQL compares them: equal
/// bytes, equal rank; ranks follow the byte order. Rows with a NULL part get none.
pub(crate) fn rank_bytes(keys: &ByteKeys) -> Vec<(usize, u64)> {
    let mut order: Vec<usize> = (0..keys.spans.len())
        .filter(|&i| keys.spans[i].is_some())
        .collect();
    order.sort_unstable_by(|&a, &b| keys.key(a).cmp(&keys.key(b)).then(a.cmp(&b)));
    let mut ranks = Vec::with_capacity(order.len());
    let mut rank = 0;
    let mut previous: Option<&[u8]> = None;
    for position in order {
        let key = keys.key(position);
        if previous != key {
            rank += 1;
            previous = key;
        }
        ranks.push((position, rank));
    }
    ranks
}

/// The results of a call as statements return them: at most one per input position.
#[derive(Debug)]
pub(crate) struct Results<Out> {
    /// The row and its inserted flag (`None`: kept, or the flag is unknown on this table).
    rows: Vec<Option<(Out, Option<bool>, bool)>>,
}

impl<Out: Clone> Results<Out> {
    pub(crate) fn new(len: usize) -> Self {
        Results {
            rows: (0..len).map(|_| None).collect(),
        }
    }

    /// Whether the row at `position` was written (`Some(true)`), kept (`Some(false)`) or has no
    /// result (`None`).
    pub(crate) fn written_at_position(&self, position: usize) -> Option<bool> {
        self.rows
            .get(position)?
            .as_ref()
            .map(|(_, _, written)| *written)
    }

    /// Whether the row at `position` has its result.
    pub(crate) fn has(&self, position: usize) -> bool {
        self.rows.get(position).is_some_and(Option::is_some)
    }

    /// A row an upsert wrote for the input row at `ordinal`; `None` when the stored key matched
    /// no input key, which only a key rewritten on its way in (a trigger) can cause.
    pub(crate) fn written(
        &mut self,
        ordinal: Option<i32>,
        out: Out,
        inserted: Option<bool>,
    ) -> Result<()> {
        let Some(ordinal) = ordinal else {
            return Err(key_changed(
                "a written row's key matches no input row's key",
            ));
        };
        self.put(ordinal, out, inserted, true)
    }

    /// A row a conflict left in place for the input row at `ordinal` (`None`: the stored key
    /// matched no input key).
    pub(crate) fn kept(&mut self, ordinal: Option<i32>, out: Out) -> Result<()> {
        let Some(ordinal) = ordinal else {
            return Err(key_changed("a kept row's key matches no input row's key"));
        };
        self.put(ordinal, out, None, false)
    }

    /// A row written for the input row at `position` (rows without a key, paired by order).
    pub(crate) fn written_at(
        &mut self,
        position: usize,
        out: Out,
        inserted: Option<bool>,
    ) -> Result<()> {
        let ordinal = i32::try_from(position)
            .map_err(|_| Error::internal(format!("input position {position} out of range")))?;
        self.put(ordinal, out, inserted, true)
    }

    fn put(&mut self, ordinal: i32, out: Out, inserted: Option<bool>, written: bool) -> Result<()> {
        let slot = usize::try_from(ordinal)
            .ok()
            .and_then(|i| self.rows.get_mut(i))
            .ok_or_else(|| {
                Error::internal(format!("returned input position {ordinal} out of range"))
            })?;
        if slot.is_some() {
            return Err(key_changed(format!(
                "two stored rows match the key of input row {ordinal}"
            )));
        }
        *slot = Some((out, inserted, written));
        Ok(())
    }

    /// One result per input row, in input order: each row gets its representative's row (rows
    /// that were not sent: `Unchanged`). With `outcomes`, a written row whose inserted flag is
    /// unknown is an error.
    pub(crate) fn finish(
        mut self,
        representative: &[usize],
        outcomes: bool,
    ) -> Result<Vec<(Out, Option<Outcome>)>> {
        let mut copies = Vec::new();
        for (position, &sent) in representative.iter().enumerate() {
            if sent != position {
                let (out, _, _) = self
                    .rows
                    .get(sent)
                    .and_then(Option::as_ref)
                    .ok_or_else(|| Error::internal(format!("input row {sent} has no result")))?;
                copies.push((position, out.clone()));
            }
        }
        for (position, out) in copies {
            self.rows[position] = Some((out, None, false));
        }
        self.rows
            .into_iter()
            .enumerate()
            .map(|(position, row)| {
                let (out, inserted, written) = row.ok_or_else(|| {
                    Error::internal(format!("input row {position} has no result"))
                })?;
                let outcome = match (written, inserted) {
                    (false, _) => Some(Outcome::Unchanged),
                    (true, Some(inserted)) => Some(Outcome::written(inserted)),
                    (true, None) if outcomes => {
                        return Err(Error::internal("a written row has no inserted flag"))
                    }
                    (true, None) => None,
                };
                Ok((out, outcome))
            })
            .collect()
    }
}

pub(crate) fn key_changed(reason: impl Into<String>) -> Error {
    Error::KeyChanged {
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_ranks_without_a_policy_name_the_first_duplicate_pair() {
        let err = group(4, [(0, 2), (1, 1), (2, 3), (3, 1)], None).unwrap_err();
        assert!(
            matches!(
                err,
                Error::DuplicateConflictKey {
                    first: 1,
                    duplicate: 3
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn keep_first_sends_the_first_row_of_each_key_in_key_order() {
        let groups = group(
            4,
            [(0, 2), (1, 1), (2, 2), (3, 1)],
            Some(DuplicateKeys::KeepFirst),
        )
        .unwrap();
        assert_eq!(groups.sent, vec![1, 0]);
        assert_eq!(groups.representative, vec![0, 1, 0, 1]);
        assert!(groups.unkeyed.is_empty());
    }

    #[test]
    fn keep_last_sends_the_last_row_of_each_key() {
        let groups = group(
            4,
            [(0, 2), (1, 1), (2, 2), (3, 1)],
            Some(DuplicateKeys::KeepLast),
        )
        .unwrap();
        assert_eq!(groups.sent, vec![3, 2]);
        assert_eq!(groups.representative, vec![2, 3, 2, 3]);
    }

    #[test]
    fn rows_without_a_rank_are_unkeyed_in_input_order() {
        let groups = group(4, [(2, 1)], None).unwrap();
        assert_eq!(groups.sent, vec![2]);
        assert_eq!(groups.unkeyed, vec![0, 1, 3]);
        assert_eq!(groups.representative, vec![0, 1, 2, 3]);
    }

    #[test]
    fn empty_input_sends_nothing() {
        assert_eq!(
            group(0, [], None).unwrap(),
            Groups {
                sent: vec![],
                unkeyed: vec![],
                representative: vec![]
            }
        );
    }

    #[test]
    fn a_rank_gap_or_a_stray_position_is_an_internal_error() {
        assert!(matches!(
            group(2, [(0, 1), (1, 3)], None),
            Err(Error::Internal { .. })
        ));
        assert!(matches!(
            group(1, [(5, 1)], None),
            Err(Error::Internal { .. })
        ));
        assert!(matches!(
            group(1, [(0, 0)], None),
            Err(Error::Internal { .. })
        ));
    }

    #[test]
    fn byte_ranks_are_dense_and_follow_byte_order() {
        let mut keys = ByteKeys::default();
        for key in [Some("b"), None, Some("a"), Some("b")] {
            keys.start();
            keys.bytes.extend_from_slice(key.unwrap_or("x").as_bytes());
            keys.end(key.is_none());
        }
        assert_eq!(keys.bytes, b"bab");
        let mut halves = ByteKeys::default();
        let mut second = ByteKeys::default();
        for key in [Some("b"), None] {
            halves.start();
            halves
                .bytes
                .extend_from_slice(key.unwrap_or("x").as_bytes());
            halves.end(key.is_none());
        }
        for key in [Some("a"), Some("b")] {
            second.start();
            second.bytes.extend_from_slice(key.unwrap().as_bytes());
            second.end(false);
        }
        halves.append(second);
        assert_eq!(halves, keys, "appended halves are the whole");
        let mut ranks = rank_bytes(&keys);
        ranks.sort_unstable();
        assert_eq!(ranks, vec![(0, 2), (2, 1), (3, 2)]);
    }

    #[test]
    fn rows_are_paired_by_ordinal_and_duplicates_get_their_representative_row() {
        let mut results = Results::new(3);
        results.written(Some(2), "c", Some(true)).unwrap();
        results.kept(Some(0), "a").unwrap();
        let out = results.finish(&[0, 0, 2], true).unwrap();
        assert_eq!(
            out,
            vec![
                ("a", Some(Outcome::Unchanged)),
                ("a", Some(Outcome::Unchanged)),
                ("c", Some(Outcome::Inserted))
            ]
        );
    }

    #[test]
    fn a_written_row_matching_no_input_is_a_changed_key() {
        let mut results = Results::<&str>::new(1);
        assert!(matches!(
            results.written(None, "x", Some(true)),
            Err(Error::KeyChanged { .. })
        ));
    }

    #[test]
    fn two_rows_for_one_input_are_a_changed_key() {
        let mut results = Results::new(1);
        results.written(Some(0), "x", Some(false)).unwrap();
        assert!(matches!(
            results.written(Some(0), "y", Some(false)),
            Err(Error::KeyChanged { .. })
        ));
    }

    #[test]
    fn an_unknown_flag_is_an_error_only_when_outcomes_are_asked_for() {
        let mut results = Results::new(1);
        results.written(Some(0), "x", None).unwrap();
        assert_eq!(results.finish(&[0], false).unwrap(), vec![("x", None)]);
        let mut results = Results::new(1);
        results.written(Some(0), "x", None).unwrap();
        assert!(results.finish(&[0], true).is_err());
    }

    #[test]
    fn a_row_without_a_result_is_an_internal_error() {
        let results = Results::<&str>::new(2);
        assert!(!results.has(0));
        assert!(matches!(
            results.finish(&[0, 1], false),
            Err(Error::Internal { .. })
        ));
    }

    #[test]
    fn an_ordinal_out_of_range_is_an_internal_error() {
        let mut results = Results::new(1);
        assert!(matches!(
            results.kept(Some(7), "x"),
            Err(Error::Internal { .. })
        ));
        assert!(matches!(
            results.kept(Some(-1), "x"),
            Err(Error::Internal { .. })
        ));
    }
}
