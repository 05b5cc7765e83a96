//! The journal's record format, and reading records back from a segment's bytes.
//!
//! A record is `[magic u32][len u32][crc32c u32][payload]`, little-endian, where the checksum
//! covers `len` and the payload, and the payload is `[op u8][space u8][id u64][expires u64][value]`.
//! The magic lets a scan past damaged bytes find the next record cheaply; the checksum decides
//! whether it is one.
//!
//! A batch written all or nothing is one record of op [`Op::Batch`] whose value is its members:
//! records of the same format, put or delete, back to back, each marked with a member magic
//! instead of the record magic. Its one checksum covers every member, so a batch cut short or
//! damaged anywhere reads as no record at all; and since a scan past damage looks for the record
//! magic only, it never lands on a member of a damaged batch and applies it alone. (The magic is
//! outside the checksum: a member copied out of its batch becomes a record by swapping it.)

/// Marks the start of every record ("WHJ1").
const MAGIC: u32 = 0x314a_4857;
/// Marks the start of a member of a batch ("WHM1").
const MEMBER_MAGIC: u32 = 0x314d_4857;
/// Bytes before the payload: magic, length, checksum.
pub const HEADER_BYTES: usize = 12;
/// Bytes of the payload before the value: op, space, id, expiry.
const PAYLOAD_PREFIX: usize = 18;
/// The largest payload a record may have; longer lengths are damage.
const MAX_PAYLOAD: usize = 1 << 30;

/// What a record does to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The key now holds the record's value (until it expires).
    Put,
    /// The key holds nothing.
    Delete,
    /// The record's value is a batch of member records, read back all or none (its key is
    /// [`BATCH_KEY`]). As an index entry: the bytes before the first member.
    Batch,
}

/// The key of a batch record (it puts or deletes nothing itself).
pub const BATCH_KEY: Key = Key { space: 0, id: 0 };

/// Bytes of a batch record before its first member.
pub const BATCH_HEADER_BYTES: usize = HEADER_BYTES + PAYLOAD_PREFIX;

/// A record's key: a space (what kind of thing it is) and an id within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Which kind of record (see [`super::space`]).
    pub space: u8,
    /// The id within the space.
    pub id: u64,
}

/// One record, borrowed from the bytes it was read from.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Put or delete.
    pub op: Op,
    /// The key.
    pub key: Key,
    /// Unix milliseconds after which a put no longer counts (0: never).
    pub expires_ms: u64,
    /// The value (empty for a delete).
    pub value: &'a [u8],
}

impl Record<'_> {
    /// Bytes the record takes in a segment.
    pub fn encoded_len(&self) -> usize {
        HEADER_BYTES + PAYLOAD_PREFIX + self.value.len()
    }

    /// Appends the encoded record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_with(self.op, self.key, self.expires_ms, out, |out| {
            out.extend_from_slice(self.value);
        });
    }
}

/// Appends a record whose value `write_value` appends to `out` (so that a value is encoded in
/// place, not copied); returns the record's length.
pub fn encode_with(
    op: Op,
    key: Key,
    expires_ms: u64,
    out: &mut Vec<u8>,
    write_value: impl FnOnce(&mut Vec<u8>),
) -> usize {
    let start = out.len();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    // Length and checksum, filled in once the value is written.
    out.extend_from_slice(&[0; 8]);
    out.push(match op {
        Op::Put => 1,
        Op::Delete => 2,
        Op::Batch => 3,
    });
    out.push(key.space);
    out.extend_from_slice(&key.id.to_le_bytes());
    out.extend_from_slice(&expires_ms.to_le_bytes());
    write_value(out);
    let len = u32::try_from(out.len() - start - HEADER_BYTES).unwrap_or(u32::MAX);
    out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&len.to_le_bytes()),
        &out[start + HEADER_BYTES..],
    );
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// Appends one [`Op::Batch`] record whose members are `records` (whole records, encoded back
/// to back by [`encode_with`]); returns the bytes before the first member
/// ([`BATCH_HEADER_BYTES`]).
pub fn encode_batch(records: &[u8], out: &mut Vec<u8>) -> usize {
    encode_with(Op::Batch, BATCH_KEY, 0, out, |out| {
        let mut at = out.len();
        out.extend_from_slice(records);
        while at + HEADER_BYTES <= out.len() {
            out[at..at + 4].copy_from_slice(&MEMBER_MAGIC.to_le_bytes());
            let len = u32::from_le_bytes([out[at + 4], out[at + 5], out[at + 6], out[at + 7]]);
            at += HEADER_BYTES + len as usize;
        }
    });
    BATCH_HEADER_BYTES
}

/// Makes the encoded batch member `bytes` a record of its own (a member's checksum does not
/// cover its magic). Anything else is left as it is.
pub fn member_to_record(bytes: &mut [u8]) {
    if let Some(magic) = bytes.get_mut(..4)
        && *magic == MEMBER_MAGIC.to_le_bytes()
    {
        magic.copy_from_slice(&MAGIC.to_le_bytes());
    }
}

/// The whole, checksum-valid record at `at` in `data`, and its length, if there is one.
pub fn read_at(data: &[u8], at: usize) -> Option<(Record<'_>, usize)> {
    read_marked(data, at, MAGIC)
}

/// The members of a batch record's value, in order, each with its offset in `value` and its
/// length; `None` unless the whole value is members (a put or a delete each).
pub fn members(value: &[u8]) -> Option<Vec<(Record<'_>, usize, usize)>> {
    let mut members = Vec::new();
    let mut at = 0;
    while at < value.len() {
        let (member, len) = read_marked(value, at, MEMBER_MAGIC)?;
        if member.op == Op::Batch {
            return None;
        }
        members.push((member, at, len));
        at += len;
    }
    Some(members)
}

/// The whole, checksum-valid record marked `magic` at `at` in `data`, and its length.
fn read_marked(data: &[u8], at: usize, magic: u32) -> Option<(Record<'_>, usize)> {
    let header = data.get(at..at.checked_add(HEADER_BYTES)?)?;
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    if word(0) != magic {
        return None;
    }
    let len = usize::try_from(word(4)).ok()?;
    if !(PAYLOAD_PREFIX..=MAX_PAYLOAD).contains(&len) {
        return None;
    }
    let start = at + HEADER_BYTES;
    let payload = data.get(start..start.checked_add(len)?)?;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[4..8]), payload);
    if crc != word(8) {
        return None;
    }
    let op = match payload[0] {
        1 => Op::Put,
        2 => Op::Delete,
        3 => Op::Batch,
        _ => return None,
    };
    let u64_at = |i: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&payload[i..i + 8]);
        u64::from_le_bytes(bytes)
    };
    let record = Record {
        op,
        key: Key {
            space: payload[1],
            id: u64_at(2),
        },
        expires_ms: u64_at(10),
        value: &payload[PAYLOAD_PREFIX..],
    };
    Some((record, HEADER_BYTES + len))
}

/// The next offset after `from` where a whole record reads, if any.
pub fn next_record(data: &[u8], from: usize) -> Option<usize> {
    let magic = MAGIC.to_le_bytes();
    let mut at = from;
    while let Some(found) = data
        .get(at..)?
        .windows(magic.len())
        .position(|window| window == magic)
    {
        let candidate = at + found;
        if read_at(data, candidate).is_some() {
            return Some(candidate);
        }
        at = candidate + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(id: u64, value: &[u8]) -> Record<'_> {
        Record {
            op: Op::Put,
            key: Key { space: 1, id },
            expires_ms: 7,
            value,
        }
    }

    #[test]
    fn records_round_trip_and_any_flipped_byte_is_refused() {
        let mut data = Vec::new();
        put(1, b"first").encode(&mut data);
        let second_at = data.len();
        put(2, b"").encode(&mut data);
        let (first, len) = read_at(&data, 0).expect("first record");
        assert_eq!(
            (first.key.id, first.value, first.expires_ms),
            (1, &b"first"[..], 7)
        );
        assert_eq!(len, second_at);
        assert_eq!(read_at(&data, second_at).expect("second").0.key.id, 2);
        for i in 0..second_at {
            let mut damaged = data.clone();
            damaged[i] ^= 0x40;
            assert!(
                read_at(&damaged, 0).is_none(),
                "byte {i} flipped still reads"
            );
            assert_eq!(next_record(&damaged, 0), Some(second_at));
        }
    }

    #[test]
    fn a_cut_record_does_not_read() {
        let mut data = Vec::new();
        put(1, b"some value").encode(&mut data);
        for cut in 0..data.len() {
            assert!(read_at(&data[..cut], 0).is_none());
            assert!(next_record(&data[..cut], 0).is_none());
        }
    }
}
