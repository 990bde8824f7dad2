//! Command-line output that ends quietly when its reader goes away
//! (`tesserad stats | head -3`): a closed pipe is not an error of ours.

use std::io::{self, Write};

/// Writes `text` and a newline to standard output. A reader that went away
/// (`EPIPE`) ends the output quietly; any other failure is returned.
pub fn print_line(text: &str) -> io::Result<()> {
    write_line(&mut io::stdout().lock(), text)
}

/// Writes `text` and a newline to `out` and flushes it, treating a broken
/// pipe as the end of the output rather than an error.
pub fn write_line(out: &mut impl Write, text: &str) -> io::Result<()> {
    let written = out
        .write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_broken_pipe_ends_the_output_without_an_error() {
        assert!(write_line(&mut Closed, "text").is_ok());
        let mut buffer = Vec::new();
        write_line(&mut buffer, "text").expect("written");
        assert_eq!(buffer, b"text\n");
    }
}
