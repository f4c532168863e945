//! Reads a file with 1 MiB reads and counts `dt0` with `memchr::memmem`.
//!
//! ```text
//! cargo run --release --example read_memchr -- FILE
//! ```
//!
//! prints the number of `dt0` occurrences and of bytes read. This is the
//! "read and memchr" speed limit that `dtredact filter` is compared against
//! in `benches/compare.sh`: every byte is read once and searched once, and
//! nothing is written.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::process::ExitCode;

use memchr::memmem::Finder;

const READ_SIZE: usize = 1024 * 1024;
const NEEDLE: &[u8] = b"dt0";

fn count(path: &str) -> std::io::Result<(u64, u64)> {
    let mut file = File::open(path)?;
    let finder = Finder::new(NEEDLE);
    // The last NEEDLE.len() - 1 bytes of each read are kept in front of the
    // next one, so that a match cut by a read boundary is still counted.
    let keep = NEEDLE.len() - 1;
    let mut buf = vec![0u8; keep + READ_SIZE];
    let mut carried = 0;
    let mut matches = 0u64;
    let mut bytes = 0u64;
    loop {
        let n = match file.read(&mut buf[carried..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        bytes += n as u64;
        let filled = carried + n;
        matches += finder.find_iter(&buf[..filled]).count() as u64;
        carried = keep.min(filled);
        buf.copy_within(filled - carried..filled, 0);
    }
    Ok((matches, bytes))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path] = args.as_slice() else {
        eprintln!("usage: read_memchr FILE");
        return ExitCode::FAILURE;
    };
    match count(path) {
        Ok((matches, bytes)) => {
            println!("{matches} {bytes}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("read_memchr: failed to read {path}: {e}");
            ExitCode::FAILURE
        }
    }
}
