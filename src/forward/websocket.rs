//! WebSocket frames as a tunnel sees them (RFC 6455 §5.2): headers only, never payloads.
//!
//! A relayed `101` makes the connection a tunnel that doorman no longer parses as HTTP, so a
//! confused app that answers `101` to the wrong request would turn it into a raw channel to
//! the upstream: requests on any path, with any identity header, past the gate. Following the
//! frame headers of the client's side keeps the tunnel a WebSocket: every client frame must be
//! masked (§5.1: a server must close the connection on an unmasked one) and carry an opcode
//! the protocol defines, and control frames must be final and at most 125 bytes (§5.5). Bytes
//! that are not frames — `GET /admin HTTP/1.1` among them — fail those checks at once.
//!
//! [`Frames`] is a streaming reader: fed the bytes as they pass, whatever the chunking, it
//! keeps 2–14 header bytes and a count of the payload still to skip, so it costs nothing per
//! payload byte and never holds a payload. (Following the upstream side's frames the same way
//! is how a Close can later be put between two frames without tearing one, DESIGN.md §11.)

use std::fmt;

/// Why a stream of bytes is not a WebSocket's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A frame without the mask bit.
    Mask,
    /// An opcode RFC 6455 does not define (3–7, 11–15).
    Opcode(u8),
    /// A control frame that is fragmented or longer than 125 bytes.
    Control,
    /// A 64-bit length with its most significant bit set, or a length not in its shortest
    /// form (§5.2: "the minimal number of bytes MUST be used").
    Length,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Mask => f.write_str("unmasked client frame"),
            FrameError::Opcode(op) => write!(f, "undefined opcode {op:#x}"),
            FrameError::Control => f.write_str("fragmented or oversized control frame"),
            FrameError::Length => f.write_str("malformed payload length"),
        }
    }
}

impl std::error::Error for FrameError {}

/// A streaming reader of a client's frame headers, or of the upstream's for their boundaries
/// only ([`Frames::boundaries`]).
#[derive(Debug, Clone, Default)]
pub struct Frames {
    /// Following the upstream's side: nothing is refused (the browser judges what its server
    /// sends); the mask bit only sizes the header.
    lenient: bool,
    /// The current header's bytes so far (at most 14).
    header: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to pass; while this is non-zero, bytes are
    /// payload.
    payload_left: u64,
}

impl Frames {
    /// A reader of the upstream side's frames, for where they end.
    pub fn boundaries() -> Frames {
        Frames {
            lenient: true,
            ..Frames::default()
        }
    }

    /// Whether the bytes so far end exactly between two frames.
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.payload_left == 0
    }

    /// How many of `bytes` (the next ones) take the stream to the end of the current frame:
    /// `Some(0)` at a boundary already, `None` when the frame goes on past them. Only for
    /// [`Frames::boundaries`] readers (the upstream's side is never refused).
    pub fn to_boundary(&self, bytes: &[u8]) -> Option<usize> {
        if self.at_boundary() {
            return Some(0);
        }
        let mut ahead = self.clone();
        for i in 0..bytes.len() {
            if ahead.payload_left > 0 {
                let left = usize::try_from(ahead.payload_left).unwrap_or(usize::MAX);
                let end = i.checked_add(left)?;
                return (end <= bytes.len()).then_some(end);
            }
            ahead.feed(&bytes[i..=i]).ok()?;
            if ahead.at_boundary() {
                return Some(i + 1);
            }
        }
        None
    }

    /// Follow `bytes`, the next ones of the stream. `Err` at the first header that breaks the
    /// rules; the bytes before it are frames.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), FrameError> {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skip = usize::try_from(self.payload_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                bytes = &bytes[skip..];
                self.payload_left -= skip as u64;
                continue;
            }
            self.header[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if let Some(payload) = self.header_done()? {
                self.have = 0;
                self.payload_left = payload;
            }
        }
        Ok(())
    }

    /// The payload length once the header in `self.header[..self.have]` is complete; `None`
    /// while it needs more bytes. Checks each field as soon as it has arrived.
    fn header_done(&self) -> Result<Option<u64>, FrameError> {
        let h = &self.header[..self.have];
        let first = h[0];
        let (fin, opcode) = (first & 0x80 != 0, first & 0x0f);
        let control = opcode >= 0x8;
        let strict = !self.lenient;
        if strict && !matches!(opcode, 0x0..=0x2 | 0x8..=0xa) {
            return Err(FrameError::Opcode(opcode));
        }
        if strict && control && !fin {
            return Err(FrameError::Control);
        }
        let Some(&second) = h.get(1) else {
            return Ok(None);
        };
        let masked = second & 0x80 != 0;
        if strict && !masked {
            return Err(FrameError::Mask);
        }
        let short = u64::from(second & 0x7f);
        let length_bytes = match short {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        if strict && control && short > 125 {
            return Err(FrameError::Control);
        }
        if self.have < 2 + length_bytes {
            return Ok(None);
        }
        let payload = match length_bytes {
            0 => short,
            2 => {
                let n = u64::from(u16::from_be_bytes([h[2], h[3]]));
                if strict && n < 126 {
                    return Err(FrameError::Length);
                }
                n
            }
            _ => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&h[2..10]);
                let n = u64::from_be_bytes(be);
                if strict && (n >> 63 != 0 || n <= 0xffff) {
                    return Err(FrameError::Length);
                }
                n
            }
        };
        // Then the 4-byte masking key, when there is one.
        let key = if masked { 4 } else { 0 };
        Ok((self.have == 2 + length_bytes + key).then_some(payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: masked with a fixed key, `payload` as is (the reader never looks).
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[1, 2, 3, 4]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn client_frames_pass_whatever_the_chunking() {
        let mut stream = Vec::new();
        stream.extend(client_frame(0x81, b"hello"));
        stream.extend(client_frame(0x02, &[7; 300])); // binary, not final
        stream.extend(client_frame(0x80, &[8; 70_000])); // continuation, final, 64-bit length
        stream.extend(client_frame(0x89, b"ping"));
        stream.extend(client_frame(0x88, &[0x03, 0xe8]));
        for chunk in [1, 2, 3, 7, 13, 4096, stream.len()] {
            let mut frames = Frames::default();
            for piece in stream.chunks(chunk) {
                assert_eq!(frames.feed(piece), Ok(()), "chunk {chunk}");
            }
            assert_eq!((frames.have, frames.payload_left), (0, 0), "chunk {chunk}");
        }
    }

    #[test]
    fn the_upstreams_frame_boundaries_are_found_in_any_chunk() {
        // Server frames: unmasked, a 16-bit length, then a 64-bit one.
        let mut stream = vec![0x82, 126, 0x01, 0x00];
        stream.extend([7u8; 256]);
        stream.extend([0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        stream.extend(vec![8u8; 65_536]);
        let first_end = 4 + 256;
        let mut f = Frames::boundaries();
        assert_eq!(f.to_boundary(&stream), Some(0));
        f.feed(&stream[..1]).unwrap();
        assert!(!f.at_boundary());
        assert_eq!(f.to_boundary(&stream[1..]), Some(first_end - 1));
        assert_eq!(f.to_boundary(&stream[1..100]), None);
        f.feed(&stream[1..first_end]).unwrap();
        assert!(f.at_boundary());
        f.feed(&stream[first_end..first_end + 5]).unwrap();
        assert_eq!(
            f.to_boundary(&stream[first_end + 5..]),
            Some(stream.len() - first_end - 5)
        );
        // Nothing is refused on this side.
        assert_eq!(Frames::boundaries().feed(b"GET / HTTP/1.1"), Ok(()));
    }

    #[test]
    fn payloads_are_skipped_not_read() {
        // A payload that looks like an HTTP request is payload: only headers are judged.
        let mut stream = client_frame(0x81, b"GET /admin HTTP/1.1\r\n\r\n");
        stream.extend(client_frame(0x82, &[0xff; 10]));
        assert_eq!(Frames::default().feed(&stream), Ok(()));
    }

    #[test]
    fn what_is_not_a_client_frame_is_refused() {
        let refuse = |bytes: &[u8]| Frames::default().feed(bytes);
        // An HTTP request in a tunnel: 'G' = 0x47 is opcode 7.
        assert_eq!(
            refuse(b"GET /admin HTTP/1.1\r\n"),
            Err(FrameError::Opcode(7))
        );
        // 'P' is a continuation frame's first byte; 'O' then has no mask bit.
        assert_eq!(refuse(b"POST /x HTTP/1.1\r\n"), Err(FrameError::Mask));
        assert_eq!(refuse(b"DELETE /x"), Err(FrameError::Opcode(4)));
        assert_eq!(refuse(b"HEAD /x"), Err(FrameError::Control)); // 'H': a close, not final
        assert_eq!(refuse(&[0x81, 0x05, b'h']), Err(FrameError::Mask));
        assert_eq!(refuse(&[0x83, 0x80]), Err(FrameError::Opcode(3)));
        assert_eq!(refuse(&[0x8b]), Err(FrameError::Opcode(0xb)));
        assert_eq!(refuse(&[0x09, 0x80]), Err(FrameError::Control)); // fragmented ping
        assert_eq!(refuse(&[0x89, 0x80 | 126]), Err(FrameError::Control));
        assert_eq!(refuse(&[0x81, 0x80 | 126, 0, 5]), Err(FrameError::Length));
        let mut huge = vec![0x82, 0x80 | 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(refuse(&huge), Err(FrameError::Length));
    }

    #[test]
    fn an_error_after_good_frames_is_still_found() {
        let mut stream = client_frame(0x81, b"fine");
        stream.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let mut frames = Frames::default();
        let first: Result<(), FrameError> = stream.chunks(3).try_for_each(|c| frames.feed(c));
        assert_eq!(first, Err(FrameError::Opcode(7)));
    }
}
