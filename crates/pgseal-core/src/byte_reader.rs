//! A cursor over bytes already in memory, for the fixed-layout parts of the formats.
//!
//! Every read either returns what was asked for and moves past it, or returns `None` and leaves
//! the reader where it was; none allocates or copies more than a fixed-size array, so a length
//! field read from a file can only ever select bytes that are there. Callers turn `None` into
//! the error that fits where they are (a truncated preamble, a header field cut short, a damaged
//! slot).

/// Reads integers, arrays and slices off the front of a byte slice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ByteReader<'a> {
    rest: &'a [u8],
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        ByteReader { rest: bytes }
    }

    /// The bytes not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// Whether everything has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next `n` bytes, borrowed.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.rest.split_at_checked(n)?;
        self.rest = tail;
        Some(head)
    }

    /// The next `N` bytes, copied into an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, tail) = self.rest.split_first_chunk::<N>()?;
        self.rest = tail;
        Some(*head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    pub(crate) fn u16_be(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32_be(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn u64_be(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    pub(crate) fn u32_le(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64_le(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::ByteReader;

    #[test]
    fn reads_in_order_with_both_byte_orders() {
        let bytes = [
            0x01, // u8
            0x02, 0x03, // u16 be
            0x04, 0x05, 0x06, 0x07, // u32 be
            0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, // u64 be
            0x10, 0x11, 0x12, 0x13, // u32 le
            0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, // u64 le
            0x1c, 0x1d, // array
            0x1e, 0x1f, 0x20, // take
        ];
        let mut r = ByteReader::new(&bytes);
        assert_eq!(r.u8(), Some(0x01));
        assert_eq!(r.u16_be(), Some(0x0203));
        assert_eq!(r.u32_be(), Some(0x0405_0607));
        assert_eq!(r.u64_be(), Some(0x0809_0a0b_0c0d_0e0f));
        assert_eq!(r.u32_le(), Some(0x1312_1110));
        assert_eq!(r.u64_le(), Some(0x1b1a_1918_1716_1514));
        assert_eq!(r.array::<2>(), Some([0x1c, 0x1d]));
        assert!(!r.is_empty());
        assert_eq!(r.rest(), &[0x1e, 0x1f, 0x20]);
        assert_eq!(r.take(3), Some(&[0x1e, 0x1f, 0x20][..]));
        assert!(r.is_empty());
        assert_eq!(r.rest(), &[] as &[u8]);
    }

    /// Every accessor, asked for one byte more than is left, returns `None` and consumes
    /// nothing; asked for exactly what is left, it succeeds and empties the reader.
    #[test]
    fn every_accessor_stops_at_the_end_without_consuming() {
        fn check<T: PartialEq + std::fmt::Debug>(
            width: usize,
            read: impl Fn(&mut ByteReader<'_>) -> Option<T>,
        ) {
            let bytes = [0xAAu8; 16];
            for have in 0..width {
                let mut r = ByteReader::new(&bytes[..have]);
                assert_eq!(read(&mut r), None, "{width}-byte read from {have} bytes");
                assert_eq!(r.rest().len(), have, "a failed read consumed bytes");
            }
            let mut r = ByteReader::new(&bytes[..width]);
            assert!(
                read(&mut r).is_some(),
                "{width}-byte read from {width} bytes"
            );
            assert!(r.is_empty());
            assert_eq!(read(&mut r), None, "{width}-byte read at the end");
        }
        check(1, |r| r.u8());
        check(2, |r| r.u16_be());
        check(4, |r| r.u32_be());
        check(8, |r| r.u64_be());
        check(4, |r| r.u32_le());
        check(8, |r| r.u64_le());
        check(5, |r| r.array::<5>());
        check(7, |r| r.take(7).map(<[u8]>::to_vec));
    }

    #[test]
    fn zero_length_reads_succeed_even_when_empty() {
        let mut r = ByteReader::new(&[]);
        assert_eq!(r.take(0), Some(&[] as &[u8]));
        assert_eq!(r.array::<0>(), Some([]));
        assert!(r.is_empty());
    }

    /// A length field can only select bytes that exist: the largest lengths a format can
    /// declare fail cleanly instead of overflowing or allocating.
    #[test]
    fn huge_lengths_fail_without_moving() {
        let bytes = [1u8, 2, 3];
        let mut r = ByteReader::new(&bytes);
        for n in [4, u32::MAX as usize, usize::MAX] {
            assert_eq!(r.take(n), None);
        }
        assert_eq!(r.rest(), &bytes);
        assert_eq!(r.take(1), Some(&[1u8][..]));
        assert_eq!(r.take(usize::MAX), None);
        assert_eq!(r.rest(), &[2, 3]);
    }
}
