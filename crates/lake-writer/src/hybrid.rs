//! Parquet's RLE/bit-packed hybrid encoding, as silt's own column writers use it: for the
//! definition levels of the plain columns ([`crate::plain`]) and for the dictionary indices of
//! the number columns ([`crate::dict`]).

/// Appends `values` of `width` bits each (at most 32) in the hybrid encoding: a run of 16 or
/// more equal values as an RLE run (its length, then its value in `width` rounded up to bytes),
/// the rest bit-packed, eight values a group of `width` bytes, up to 63 groups a run (the last
/// group padded with zeros, which readers pass over: they know how many values a page has).
///
/// For levels (bit width 1) that is at most two bits a level: an RLE run costs at most a bit
/// a level, a bit-packed one a bit a level and a header byte, and each bit-packed run but the
/// last is followed by an RLE run of 16 levels or more, or is 504 levels long.
pub(crate) fn hybrid<T: Copy + Eq + Into<u64>>(values: &[T], width: u8, out: &mut Vec<u8>) {
    debug_assert!(width <= 32);
    let value_bytes = usize::from(width).div_ceil(8);
    // Whether the values from `i` on start with a run of 16 equal ones.
    let long_run_at =
        |i: usize| values.len() - i >= 16 && values[i + 1..i + 16].iter().all(|&v| v == values[i]);
    let n = values.len();
    let mut i = 0;
    while i < n {
        if long_run_at(i) {
            let value = values[i];
            let run = values[i..].iter().take_while(|&&v| v == value).count();
            varint(out, (run as u64) << 1);
            out.extend_from_slice(&value.into().to_le_bytes()[..value_bytes]);
            i += run;
            continue;
        }
        let header = out.len();
        out.push(0);
        let mut groups = 0u8;
        while i < n && groups < 63 {
            let group = &values[i..n.min(i + 8)];
            pack(group, width, out);
            groups += 1;
            i += group.len();
            if i < n && long_run_at(i) {
                break;
            }
        }
        out[header] = (groups << 1) | 1;
    }
}

/// Eight values (fewer, padded with zeros) of `width` bits, least significant bit first:
/// `width` bytes.
#[inline]
fn pack<T: Copy + Into<u64>>(group: &[T], width: u8, out: &mut Vec<u8>) {
    let (mut acc, mut bits) = (0u64, 0u8);
    for k in 0..8 {
        let v = group.get(k).map_or(0, |&v| v.into());
        acc |= v << bits;
        bits += width;
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
}

pub(crate) fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The bits needed for the values `0..=max`.
pub(crate) fn bit_width(max: u64) -> u8 {
    (u64::BITS - max.leading_zeros()) as u8
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Decodes `n` values of the hybrid of `width` bits, as a reader does.
    pub(crate) fn decode(mut bytes: &[u8], width: u8, n: usize) -> Vec<u64> {
        let value_bytes = usize::from(width).div_ceil(8);
        let mut out = Vec::new();
        while out.len() < n {
            let mut header = 0u64;
            let mut shift = 0;
            loop {
                let b = bytes[0];
                bytes = &bytes[1..];
                header |= ((b & 0x7f) as u64) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
            if header & 1 == 0 {
                let run = (header >> 1) as usize;
                let mut v = [0u8; 8];
                v[..value_bytes].copy_from_slice(&bytes[..value_bytes]);
                out.extend(std::iter::repeat_n(u64::from_le_bytes(v), run));
                bytes = &bytes[value_bytes..];
            } else {
                let groups = (header >> 1) as usize;
                let packed = &bytes[..groups * usize::from(width)];
                let mask = (1u64 << width) - 1;
                for k in 0..groups * 8 {
                    let bit = k * usize::from(width);
                    let mut word = [0u8; 8];
                    let end = packed.len().min(bit / 8 + 8);
                    word[..end - bit / 8].copy_from_slice(&packed[bit / 8..end]);
                    out.push((u64::from_le_bytes(word) >> (bit % 8)) & mask);
                }
                bytes = &bytes[groups * usize::from(width)..];
            }
        }
        assert!(bytes.is_empty(), "{} bytes left over", bytes.len());
        out.truncate(n);
        out
    }

    fn random() -> impl FnMut() -> u64 {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    #[test]
    fn definition_levels_round_trip_in_at_most_two_bits_each() {
        let mut random = random();
        let mut cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![1],
            vec![0; 7],
            vec![1; 16],
            vec![1; 20_000],
            (0..20_000).map(|i| (i % 2) as u8).collect(),
            // Runs just under and over 16, at every offset from a group's start.
            (0..5000).map(|i| ((i / 15) % 2) as u8).collect(),
            (0..5000).map(|i| ((i / 17) % 2) as u8).collect(),
            (0..5000).map(|i| ((i % 40) < 3) as u8).collect(),
        ];
        for _ in 0..50 {
            let n = (random() % 3000) as usize;
            let dense = random() % 100;
            cases.push((0..n).map(|_| (random() % 100 >= dense) as u8).collect());
        }
        for levels in cases {
            let mut out = Vec::new();
            hybrid(&levels, 1, &mut out);
            let back: Vec<u8> = decode(&out, 1, levels.len())
                .into_iter()
                .map(|l| l as u8)
                .collect();
            assert_eq!(back, levels);
            assert!(
                out.len() <= levels.len() / 4 + 2,
                "{} bytes for {} levels",
                out.len(),
                levels.len()
            );
        }
    }

    #[test]
    fn indices_of_every_width_round_trip() {
        let mut random = random();
        for width in 0..=32u8 {
            let max = if width == 0 {
                0
            } else {
                u64::MAX >> (64 - width)
            };
            let value = |r: u64| if max == 0 { 0 } else { (r % (max + 1)) as u32 };
            let cases: Vec<Vec<u32>> = vec![
                vec![],
                vec![value(max)],
                (0..1000).map(|_| value(random())).collect(),
                // Runs of one value, long and short, between scattered ones.
                (0..3000)
                    .map(|i| match (i / 40) % 3 {
                        0 => value(max),
                        1 => value(random()),
                        _ => value(i / 13),
                    })
                    .collect(),
                vec![value(max); 100_000],
            ];
            for values in cases {
                let mut out = Vec::new();
                hybrid(&values, width, &mut out);
                let back = decode(&out, width, values.len());
                let want: Vec<u64> = values.iter().map(|&v| u64::from(v)).collect();
                assert_eq!(back, want, "width {width}");
            }
        }
        assert_eq!(bit_width(0), 0);
        assert_eq!(bit_width(1), 1);
        assert_eq!(bit_width(499), 9);
        assert_eq!(bit_width(u32::MAX as u64), 32);
    }
}
