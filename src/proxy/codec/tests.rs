use std::io::{Read, Write};
use std::process::Command;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const ALL_CODINGS: [ContentCoding; 5] = [
    ContentCoding::Identity,
    ContentCoding::Gzip,
    ContentCoding::Deflate,
    ContentCoding::Zstd,
    ContentCoding::Brotli,
];

const COMPRESSED_CODINGS: [ContentCoding; 4] = [
    ContentCoding::Gzip,
    ContentCoding::Deflate,
    ContentCoding::Zstd,
    ContentCoding::Brotli,
];

const UNLIMITED: Limits = Limits {
    max_decoded: u64::MAX,
    max_ratio: u64::MAX,
};

/// Which encoder a test uses: one per coding, plus raw deflate.
#[derive(Clone, Copy, Debug)]
enum Form {
    Coding(ContentCoding),
    RawDeflate,
}

impl Form {
    fn coding(self) -> ContentCoding {
        match self {
            Form::Coding(coding) => coding,
            Form::RawDeflate => ContentCoding::Deflate,
        }
    }

    fn encoder(self) -> Encoder {
        match self {
            Form::Coding(coding) => Encoder::new(coding),
            Form::RawDeflate => Encoder::new_raw_deflate(),
        }
    }
}

fn all_forms() -> Vec<Form> {
    let mut forms: Vec<Form> = ALL_CODINGS.into_iter().map(Form::Coding).collect();
    forms.push(Form::RawDeflate);
    forms
}

/// Generates synthetic log text, varied enough to compress like real logs.
fn sample_log(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let levels = ["INFO", "WARN", "DEBUG", "ERROR"];
    let words = [
        "request", "served", "cache", "miss", "user", "order", "retry",
    ];
    let mut text = Vec::with_capacity(len + 200);
    while text.len() < len {
        let line = format!(
            "2024-05-{:02}T{:02}:{:02}:{:02}Z {} {} {} id={:08x} took={}ms\n",
            rng.gen_range(1..29),
            rng.gen_range(0..24),
            rng.gen_range(0..60),
            rng.gen_range(0..60),
            levels[rng.gen_range(0..levels.len())],
            words[rng.gen_range(0..words.len())],
            words[rng.gen_range(0..words.len())],
            rng.gen::<u32>(),
            rng.gen_range(0..5000),
        );
        text.extend_from_slice(line.as_bytes());
    }
    text.truncate(len);
    text
}

fn encode(form: Form, data: &[u8]) -> Vec<u8> {
    let mut encoder = form.encoder();
    let mut encoded = Vec::new();
    encoder.push(data, &mut encoded).unwrap();
    encoder.finish(&mut encoded).unwrap();
    encoded
}

/// Decodes `encoded` pushed in pieces of the given sizes (the last piece
/// takes the rest).
fn decode_in_pieces(
    coding: ContentCoding,
    encoded: &[u8],
    sizes: impl IntoIterator<Item = usize>,
    limits: Limits,
) -> Result<Vec<u8>, CodecError> {
    let mut decoder = Decoder::new(coding, limits);
    let mut decoded = Vec::new();
    let mut rest = encoded;
    for size in sizes {
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        decoder.push(piece, &mut decoded)?;
        rest = tail;
        if rest.is_empty() {
            break;
        }
    }
    decoder.push(rest, &mut decoded)?;
    decoder.finish(&mut decoded)?;
    Ok(decoded)
}

fn decode(coding: ContentCoding, encoded: &[u8]) -> Result<Vec<u8>, CodecError> {
    decode_in_pieces(coding, encoded, [], UNLIMITED)
}

fn random_sizes(seed: u64, max: usize) -> impl Iterator<Item = usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    std::iter::repeat_with(move || rng.gen_range(1..=max))
}

/// Decodes with the reference decoders of the codec crates.
fn reference_decode(form: Form, encoded: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::new();
    match form {
        Form::Coding(ContentCoding::Identity) => decoded.extend_from_slice(encoded),
        Form::Coding(ContentCoding::Gzip) => {
            flate2::read::MultiGzDecoder::new(encoded)
                .read_to_end(&mut decoded)
                .unwrap();
        }
        Form::Coding(ContentCoding::Deflate) => {
            flate2::read::ZlibDecoder::new(encoded)
                .read_to_end(&mut decoded)
                .unwrap();
        }
        Form::RawDeflate => {
            flate2::read::DeflateDecoder::new(encoded)
                .read_to_end(&mut decoded)
                .unwrap();
        }
        Form::Coding(ContentCoding::Zstd) => decoded = zstd::decode_all(encoded).unwrap(),
        Form::Coding(ContentCoding::Brotli) => {
            brotli::Decompressor::new(encoded, 4096)
                .read_to_end(&mut decoded)
                .unwrap();
        }
    }
    decoded
}

/// Encodes with the reference encoders of the codec crates.
fn reference_encode(form: Form, data: &[u8]) -> Vec<u8> {
    let level = flate2::Compression::default();
    match form {
        Form::Coding(ContentCoding::Identity) => data.to_vec(),
        Form::Coding(ContentCoding::Gzip) => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), level);
            encoder.write_all(data).unwrap();
            encoder.finish().unwrap()
        }
        Form::Coding(ContentCoding::Deflate) => {
            let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), level);
            encoder.write_all(data).unwrap();
            encoder.finish().unwrap()
        }
        Form::RawDeflate => {
            let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), level);
            encoder.write_all(data).unwrap();
            encoder.finish().unwrap()
        }
        Form::Coding(ContentCoding::Zstd) => zstd::encode_all(data, 19).unwrap(),
        Form::Coding(ContentCoding::Brotli) => {
            let mut encoded = Vec::new();
            {
                let mut writer = brotli::CompressorWriter::new(&mut encoded, 4096, 9, 22);
                writer.write_all(data).unwrap();
            }
            encoded
        }
    }
}

/// Builds a gzip member with every optional header field (RFC 1952): extra
/// field, file name, comment and header CRC.
fn gzip_member_with_all_fields(data: &[u8]) -> Vec<u8> {
    let flags = GZIP_FLAG_HCRC | GZIP_FLAG_EXTRA | GZIP_FLAG_NAME | GZIP_FLAG_COMMENT;
    let mut member = vec![0x1f, 0x8b, 8, flags, 1, 2, 3, 4, 0, 3];
    member.extend_from_slice(&6u16.to_le_bytes());
    member.extend_from_slice(b"AB\x02\x00xy");
    member.extend_from_slice(b"app.log\0");
    member.extend_from_slice(b"synthetic test member\0");
    let mut header_crc = Crc::new();
    header_crc.update(&member);
    member.extend_from_slice(&((header_crc.sum() & 0xffff) as u16).to_le_bytes());

    let mut body = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    body.write_all(data).unwrap();
    member.extend_from_slice(&body.finish().unwrap());

    let mut data_crc = Crc::new();
    data_crc.update(data);
    member.extend_from_slice(&data_crc.sum().to_le_bytes());
    member.extend_from_slice(&(data.len() as u32).to_le_bytes());
    member
}

/// Asserts that `result` is the error variant `expected` names (by kind).
fn assert_kind(result: Result<Vec<u8>, CodecError>, expected: &str, case: &str) {
    let kind = match &result {
        Ok(_) => "Ok",
        Err(CodecError::Corrupt { .. }) => "Corrupt",
        Err(CodecError::Truncated { .. }) => "Truncated",
        Err(CodecError::TooLarge { .. }) => "TooLarge",
        Err(CodecError::RatioExceeded { .. }) => "RatioExceeded",
        Err(CodecError::Encode { .. }) => "Encode",
        Err(CodecError::Finished { .. }) => "Finished",
    };
    assert_eq!(kind, expected, "{case}: got {result:?}");
}

#[test]
fn parse_accepts_supported_codings() {
    let cases = [
        ("gzip", ContentCoding::Gzip),
        ("GZIP", ContentCoding::Gzip),
        (" x-gzip\t", ContentCoding::Gzip),
        ("X-Gzip", ContentCoding::Gzip),
        ("deflate", ContentCoding::Deflate),
        ("Deflate ", ContentCoding::Deflate),
        ("zstd", ContentCoding::Zstd),
        ("ZSTD", ContentCoding::Zstd),
        ("br", ContentCoding::Brotli),
        ("Br", ContentCoding::Brotli),
        ("identity", ContentCoding::Identity),
        ("IDENTITY", ContentCoding::Identity),
        ("", ContentCoding::Identity),
        ("   ", ContentCoding::Identity),
    ];
    for (value, expected) in cases {
        assert_eq!(ContentCoding::parse(value), Ok(expected), "value {value:?}");
    }
}

#[test]
fn parse_rejects_lists_and_unknown() {
    for value in [
        "gzip, br",
        "gzip,gzip",
        "gzip,",
        "compress",
        "x-compress",
        "brotli",
        "gz",
    ] {
        let error = ContentCoding::parse(value).unwrap_err();
        assert_eq!(error.0, value.trim(), "value {value:?}");
        let message = error.to_string();
        assert!(
            message.contains(&format!("{:?}", value.trim())),
            "{message}"
        );
        assert!(
            message.ends_with("supported: gzip, deflate, zstd, br, identity"),
            "{message}"
        );
    }
}

#[test]
fn parse_error_cuts_long_values() {
    let value = format!("dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX.{}", "Z".repeat(64));
    let error = ContentCoding::parse(&value).unwrap_err();
    assert_eq!(error.0, "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX....");
    assert!(!error.to_string().contains('Z'), "{error}");
}

#[test]
fn as_str_parses_back() {
    for coding in ALL_CODINGS {
        assert_eq!(ContentCoding::parse(coding.as_str()), Ok(coding));
        assert_eq!(coding.to_string(), coding.as_str());
    }
}

#[test]
fn round_trip_with_random_chunking() {
    let data = sample_log(1 << 20, 1);
    for (seed, form) in all_forms().into_iter().enumerate() {
        let seed = seed as u64;
        let mut encoder = form.encoder();
        let mut encoded = Vec::new();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut rest = &data[..];
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(rng.gen_range(1..=50_000).min(rest.len()));
            encoder.push(piece, &mut encoded).unwrap();
            if rng.gen_ratio(1, 8) {
                encoder.flush(&mut encoded).unwrap();
            }
            rest = tail;
        }
        encoder.finish(&mut encoded).unwrap();

        let decoded = decode_in_pieces(
            form.coding(),
            &encoded,
            random_sizes(seed, 20_000),
            UNLIMITED,
        )
        .unwrap();
        assert!(decoded == data, "{form:?}: round trip changed the data");
        assert!(
            reference_decode(form, &encoded) == data,
            "{form:?}: reference decoder disagrees"
        );
        if form.coding() != ContentCoding::Identity {
            assert!(
                encoded.len() < data.len() / 2,
                "{form:?}: {} bytes",
                encoded.len()
            );
        }
    }
}

#[test]
fn decoder_reads_reference_encodings() {
    let data = sample_log(300_000, 2);
    for form in all_forms() {
        let encoded = reference_encode(form, &data);
        let mut decoder = Decoder::new(form.coding(), UNLIMITED);
        let mut decoded = Vec::new();
        decoder.push(&encoded, &mut decoded).unwrap();
        decoder.finish(&mut decoded).unwrap();
        assert!(decoded == data, "{form:?}: decoded data differs");
        assert_eq!(decoder.decoded_bytes(), data.len() as u64, "{form:?}");
        assert_eq!(decoder.encoded_bytes(), encoded.len() as u64, "{form:?}");
        assert_eq!(
            decoder.is_raw_deflate(),
            matches!(form, Form::RawDeflate),
            "{form:?}"
        );
    }
}

/// Small bodies of every form, including multi-member gzip and a gzip
/// header with every optional field.
fn small_bodies() -> Vec<(String, ContentCoding, Vec<u8>, Vec<u8>)> {
    let data = sample_log(400, 3);
    let mut bodies: Vec<_> = all_forms()
        .into_iter()
        .map(|form| {
            (
                format!("{form:?}"),
                form.coding(),
                encode(form, &data),
                data.clone(),
            )
        })
        .collect();

    let mut two_members = encode(Form::Coding(ContentCoding::Gzip), &data[..150]);
    two_members.extend(encode(Form::Coding(ContentCoding::Gzip), &data[150..]));
    bodies.push((
        "gzip two members".into(),
        ContentCoding::Gzip,
        two_members,
        data.clone(),
    ));

    let all_fields = gzip_member_with_all_fields(&data);
    assert!(reference_decode(Form::Coding(ContentCoding::Gzip), &all_fields) == data);
    bodies.push((
        "gzip all header fields".into(),
        ContentCoding::Gzip,
        all_fields,
        data.clone(),
    ));

    let mut two_frames = encode(Form::Coding(ContentCoding::Zstd), &data[..100]);
    two_frames.extend(encode(Form::Coding(ContentCoding::Zstd), &data[100..]));
    bodies.push((
        "zstd two frames".into(),
        ContentCoding::Zstd,
        two_frames,
        data,
    ));
    bodies
}

#[test]
fn every_split_matches_whole_body() {
    for (name, coding, encoded, data) in small_bodies() {
        assert!(
            decode(coding, &encoded).unwrap() == data,
            "{name}: whole body"
        );
        for split in 0..=encoded.len() {
            let decoded = decode_in_pieces(coding, &encoded, [split], UNLIMITED).unwrap();
            assert!(decoded == data, "{name}: split at {split}");
        }
        let bytewise = decode_in_pieces(coding, &encoded, std::iter::repeat(1), UNLIMITED).unwrap();
        assert!(bytewise == data, "{name}: one byte at a time");
    }
}

#[test]
fn random_chunkings_of_large_body_match() {
    let data = sample_log(2 << 20, 4);
    for form in all_forms() {
        let encoded = encode(form, &data);
        for seed in 0..3 {
            let max = [7, 3000, 70_000][seed as usize];
            let decoded =
                decode_in_pieces(form.coding(), &encoded, random_sizes(seed, max), UNLIMITED)
                    .unwrap();
            assert!(decoded == data, "{form:?}: chunks of up to {max} bytes");
        }
    }
}

#[test]
fn gzip_trailing_garbage_is_corrupt() {
    let body = encode(Form::Coding(ContentCoding::Gzip), b"log line\n");
    for garbage in [&b"garbage after the member"[..], b"xy", b"\0", b"\x1f\x8c"] {
        let mut encoded = body.clone();
        encoded.extend_from_slice(garbage);
        assert_kind(
            decode(ContentCoding::Gzip, &encoded),
            "Corrupt",
            &format!("{garbage:?}"),
        );
    }
}

#[test]
fn trailing_data_after_stream_is_corrupt() {
    for form in [
        Form::Coding(ContentCoding::Deflate),
        Form::RawDeflate,
        Form::Coding(ContentCoding::Zstd),
        Form::Coding(ContentCoding::Brotli),
    ] {
        let mut encoded = encode(form, b"log line\n");
        encoded.extend_from_slice(b"trailing garbage");
        assert_kind(
            decode(form.coding(), &encoded),
            "Corrupt",
            &format!("{form:?}"),
        );
        // The same bytes in a later push.
        let split = encoded.len() - 5;
        let result = decode_in_pieces(form.coding(), &encoded, [split], UNLIMITED);
        assert_kind(result, "Corrupt", &format!("{form:?} split"));
    }
}

#[test]
fn flipped_bytes_are_corrupt() {
    let data = sample_log(100_000, 5);
    // gzip, zlib and zstd (as the encoder writes it) carry a checksum of the
    // data, so any change is detected.
    for coding in [
        ContentCoding::Gzip,
        ContentCoding::Deflate,
        ContentCoding::Zstd,
    ] {
        let mut encoded = encode(Form::Coding(coding), &data);
        let middle = encoded.len() / 2;
        for byte in &mut encoded[middle..middle + 4] {
            *byte ^= 0x55;
        }
        assert_kind(decode(coding, &encoded), "Corrupt", coding.as_str());
    }
    // Brotli has no checksum: a change is caught only when it breaks the
    // stream's structure, and this one makes the stream look unfinished.
    let mut encoded = encode(Form::Coding(ContentCoding::Brotli), &data);
    let middle = encoded.len() / 2;
    for byte in &mut encoded[middle..middle + 4] {
        *byte ^= 0x55;
    }
    assert_kind(decode(ContentCoding::Brotli, &encoded), "Truncated", "br");
}

#[test]
fn bad_headers_are_corrupt() {
    let gzip = encode(Form::Coding(ContentCoding::Gzip), b"log line\n");
    let mut bad_magic = gzip.clone();
    bad_magic[1] = 0x8c;

    let mut bad_method = gzip.clone();
    bad_method[2] = 7;
    let mut reserved_flag = gzip.clone();
    reserved_flag[3] = 0x20;
    let mut bad_header_crc = gzip_member_with_all_fields(b"log line\n");
    bad_header_crc[10 + 2 + 6 + 8 + 22] ^= 1;
    let mut zstd_magic = encode(Form::Coding(ContentCoding::Zstd), b"log line\n");
    zstd_magic[0] ^= 0xff;

    let cases = [
        ("gzip magic", ContentCoding::Gzip, bad_magic),
        ("gzip method", ContentCoding::Gzip, bad_method),
        ("gzip reserved flag", ContentCoding::Gzip, reserved_flag),
        ("gzip header crc", ContentCoding::Gzip, bad_header_crc),
        (
            "plain text as gzip",
            ContentCoding::Gzip,
            b"plain text body".to_vec(),
        ),
        ("zstd magic", ContentCoding::Zstd, zstd_magic),
        // 0x07 starts a final block of the reserved type 3 (RFC 1951).
        (
            "raw deflate block type",
            ContentCoding::Deflate,
            vec![0x07, 0x00, 0x00],
        ),
        // 0x11 selects the large-window brotli extension, which is refused.
        (
            "brotli large window",
            ContentCoding::Brotli,
            vec![0x11, 0x1e, 0x00, 0x00],
        ),
    ];
    for (case, coding, encoded) in cases {
        assert_kind(decode(coding, &encoded), "Corrupt", case);
    }
}

#[test]
fn brotli_large_window_stream_is_corrupt() {
    let mut encoded = Vec::new();
    {
        let mut params = brotli::enc::BrotliEncoderInitParams();
        params.large_window = true;
        params.lgwin = 25;
        params.quality = 5;
        let mut encoder = brotli::CompressorWriter::with_params(&mut encoded, 4096, &params);
        encoder.write_all(&sample_log(10_000, 6)).unwrap();
    }
    assert_kind(
        decode(ContentCoding::Brotli, &encoded),
        "Corrupt",
        "large window",
    );
}

#[test]
fn zstd_window_over_8_mib_is_corrupt() {
    let mut context = zstd::stream::raw::Encoder::new(3).unwrap();
    context.set_parameter(CParameter::WindowLog(24)).unwrap();
    let mut encoded = vec![0; 1 << 16];
    let mut target = OutBuffer::around(&mut encoded[..]);
    let data = sample_log(10_000, 7);
    context
        .run(&mut InBuffer::around(&data), &mut target)
        .unwrap();
    assert_eq!(context.finish(&mut target, false).unwrap(), 0);
    let len = target.pos();
    encoded.truncate(len);
    assert!(reference_decode(Form::Coding(ContentCoding::Zstd), &encoded) == data);

    let result = decode(ContentCoding::Zstd, &encoded);
    assert_kind(result.clone(), "Corrupt", "window log 24");
    let message = result.unwrap_err().to_string();
    assert!(message.starts_with("invalid zstd body: "), "{message}");
}

#[test]
fn truncated_streams_fail_on_finish() {
    let data = sample_log(50_000, 8);
    for form in all_forms() {
        if form.coding() == ContentCoding::Identity {
            continue;
        }
        let encoded = encode(form, &data);
        for cut in [
            1,
            5,
            encoded.len() / 2,
            encoded.len() - 4,
            encoded.len() - 1,
        ] {
            let mut decoder = Decoder::new(form.coding(), UNLIMITED);
            let mut decoded = Vec::new();
            decoder.push(&encoded[..cut], &mut decoded).unwrap();
            let result = decoder.finish(&mut decoded).map(|()| decoded);
            assert_kind(result, "Truncated", &format!("{form:?} cut at {cut}"));
        }
    }
}

#[test]
fn empty_body_decodes_to_nothing() {
    for coding in ALL_CODINGS {
        let mut decoder = Decoder::new(coding, UNLIMITED);
        let mut decoded = Vec::new();
        decoder.push(&[], &mut decoded).unwrap();
        decoder.finish(&mut decoded).unwrap();
        assert!(decoded.is_empty(), "{coding}");
        assert_eq!(decoder.decoded_bytes(), 0, "{coding}");
    }
}

#[test]
fn encoder_of_empty_body_is_decodable() {
    for form in all_forms() {
        let encoded = encode(form, b"");
        assert_eq!(decode(form.coding(), &encoded).unwrap(), b"", "{form:?}");
        assert!(reference_decode(form, &encoded).is_empty(), "{form:?}");
    }
}

#[test]
fn deflate_decoder_reports_raw_or_zlib() {
    let data = b"log line\n".repeat(10);
    for (form, raw) in [
        (Form::Coding(ContentCoding::Deflate), false),
        (Form::RawDeflate, true),
    ] {
        let encoded = encode(form, &data);
        let mut decoder = Decoder::new(ContentCoding::Deflate, UNLIMITED);
        let mut decoded = Vec::new();
        assert!(!decoder.is_raw_deflate(), "{form:?}: before any input");
        decoder.push(&encoded[..1], &mut decoded).unwrap();
        assert!(!decoder.is_raw_deflate(), "{form:?}: after one byte");
        decoder.push(&encoded[1..], &mut decoded).unwrap();
        decoder.finish(&mut decoded).unwrap();
        assert_eq!(decoder.is_raw_deflate(), raw, "{form:?}");
        assert_eq!(decoded, data, "{form:?}");
    }
    assert!(is_zlib_header(0x78, 0x9c));
    assert!(is_zlib_header(0x78, 0x01));
    assert!(is_zlib_header(0x78, 0xda));
    assert!(!is_zlib_header(0x78, 0x9d), "check bits wrong");
    assert!(!is_zlib_header(0x78, 0xbb), "preset dictionary");
    assert!(!is_zlib_header(0x88, 0x1b), "window over 32 KiB");
}

#[test]
fn too_large_stops_within_one_step() {
    let limit = 1 << 20;
    let limits = Limits {
        max_decoded: limit,
        max_ratio: u64::MAX,
    };
    let zeros = vec![0; 8 << 20];
    for coding in ALL_CODINGS {
        let encoded = encode(Form::Coding(coding), &zeros);
        let mut decoder = Decoder::new(coding, limits);
        let mut decoded = Vec::new();
        let error = decoder.push(&encoded, &mut decoded).unwrap_err();
        assert_eq!(error, CodecError::TooLarge { coding, limit });
        assert!(
            decoded.len() as u64 <= limit,
            "{coding}: {} bytes",
            decoded.len()
        );
        assert_eq!(decoder.decoded_bytes(), decoded.len() as u64, "{coding}");
        if coding != ContentCoding::Identity {
            assert!(
                decoded.len() as u64 + STEP as u64 > limit,
                "{coding}: stopped early"
            );
        }
    }
}

#[test]
fn exact_limit_is_accepted() {
    let data = sample_log(100_000, 9);
    let limits = Limits {
        max_decoded: data.len() as u64,
        max_ratio: u64::MAX,
    };
    for coding in ALL_CODINGS {
        let encoded = encode(Form::Coding(coding), &data);
        let decoded = decode_in_pieces(coding, &encoded, [], limits).unwrap();
        assert!(decoded == data, "{coding}");
    }
}

#[test]
fn ratio_cap_rejects_highly_compressed_body() {
    let limits = Limits {
        max_decoded: u64::MAX,
        max_ratio: 100,
    };
    let zeros = vec![0; 4 << 20];
    for coding in COMPRESSED_CODINGS {
        let encoded = encode(Form::Coding(coding), &zeros);
        let result = decode_in_pieces(coding, &encoded, random_sizes(1, 100), limits);
        assert_eq!(
            result.unwrap_err(),
            CodecError::RatioExceeded {
                coding,
                max_ratio: 100
            }
        );
    }
}

#[test]
fn ratio_cap_spares_small_and_typical_bodies() {
    let limits = Limits {
        max_decoded: u64::MAX,
        max_ratio: 20,
    };
    // 60 KiB of zeros compresses far beyond 20:1 but stays under 64 KiB.
    let small = vec![0; 60 * 1024];
    let typical = sample_log(1 << 20, 10);
    for coding in ALL_CODINGS {
        for (name, data) in [("small", &small), ("typical", &typical)] {
            let encoded = encode(Form::Coding(coding), data);
            let decoded = decode_in_pieces(coding, &encoded, random_sizes(2, 500), limits);
            assert!(decoded.unwrap() == *data, "{coding}: {name}");
        }
    }
}

#[test]
fn identity_passes_bytes_and_checks_size() {
    let limits = Limits {
        max_decoded: 10,
        max_ratio: 0,
    };
    let mut decoder = Decoder::new(ContentCoding::Identity, limits);
    let mut decoded = Vec::new();
    decoder.push(b"\0\xff\r\n", &mut decoded).unwrap();
    decoder.push(b"abcdef", &mut decoded).unwrap();
    assert_eq!(decoded, b"\0\xff\r\nabcdef");
    let error = decoder.push(b"x", &mut decoded).unwrap_err();
    assert_eq!(
        error,
        CodecError::TooLarge {
            coding: ContentCoding::Identity,
            limit: 10
        }
    );
    assert_eq!(decoded.len(), 10);
}

#[test]
fn errors_are_sticky() {
    let mut encoded = encode(Form::Coding(ContentCoding::Gzip), b"log line\n");
    encoded[0] = b'x';
    let mut decoder = Decoder::new(ContentCoding::Gzip, UNLIMITED);
    let mut decoded = Vec::new();
    let first = decoder.push(&encoded, &mut decoded).unwrap_err();
    assert_kind(Err(first.clone()), "Corrupt", "first push");
    assert_eq!(decoder.push(b"more", &mut decoded), Err(first.clone()));
    assert_eq!(decoder.finish(&mut decoded), Err(first));
}

#[test]
fn calls_after_finish_fail() {
    for coding in ALL_CODINGS {
        let mut decoder = Decoder::new(coding, UNLIMITED);
        let mut decoded = Vec::new();
        decoder
            .push(&encode(Form::Coding(coding), b"x"), &mut decoded)
            .unwrap();
        decoder.finish(&mut decoded).unwrap();
        assert_eq!(
            decoder.push(b"x", &mut decoded),
            Err(CodecError::Finished { coding })
        );

        let mut encoder = Encoder::new(coding);
        let mut encoded = Vec::new();
        encoder.finish(&mut encoded).unwrap();
        assert_eq!(
            encoder.push(b"x", &mut encoded),
            Err(CodecError::Finished { coding })
        );
        assert_eq!(
            encoder.flush(&mut encoded),
            Err(CodecError::Finished { coding })
        );
    }
}

#[test]
fn encoder_flush_makes_output_decodable() {
    let data = sample_log(200_000, 11);
    let parts = [&data[..1000], &data[1000..150_000], &data[150_000..]];
    for form in all_forms() {
        let mut encoder = form.encoder();
        let mut encoded = Vec::new();
        let mut pushed = Vec::new();
        for part in parts {
            encoder.push(part, &mut encoded).unwrap();
            encoder.flush(&mut encoded).unwrap();
            pushed.extend_from_slice(part);

            let mut decoder = Decoder::new(form.coding(), UNLIMITED);
            let mut decoded = Vec::new();
            decoder.push(&encoded, &mut decoded).unwrap();
            assert!(
                decoded == pushed,
                "{form:?}: {} of {} bytes decodable after flush",
                decoded.len(),
                pushed.len()
            );
        }
        encoder.flush(&mut encoded).unwrap();
        encoder.finish(&mut encoded).unwrap();
        assert!(decode(form.coding(), &encoded).unwrap() == data, "{form:?}");
        assert!(reference_decode(form, &encoded) == data, "{form:?}");
    }
}

#[test]
fn error_messages_name_coding_without_body_bytes() {
    let secret = b"dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX.SECRETSECRETSECRETSECRET";
    for coding in COMPRESSED_CODINGS {
        let mut encoded = encode(Form::Coding(coding), secret);
        encoded.extend_from_slice(secret);
        let error = decode(coding, &encoded).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(coding.as_str()), "{message}");
        assert!(!message.contains("SECRET"), "{message}");
        assert!(message.starts_with(char::is_lowercase), "{message}");
    }
    let examples = [
        CodecError::Truncated {
            coding: ContentCoding::Gzip,
        },
        CodecError::TooLarge {
            coding: ContentCoding::Zstd,
            limit: 5,
        },
        CodecError::RatioExceeded {
            coding: ContentCoding::Brotli,
            max_ratio: 5,
        },
        CodecError::Finished {
            coding: ContentCoding::Deflate,
        },
    ];
    for error in examples {
        let message = error.to_string();
        assert!(message.starts_with(char::is_lowercase), "{message}");
    }
}

#[test]
fn codecs_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Decoder>();
    assert_send::<Encoder>();
    assert_send::<CodecError>();
}

/// Size of one segment of the gzip bomb, in decoded bytes.
const BOMB_SEGMENT: usize = 1 << 20;

/// Generates a gzip member that decodes to `segments` MiB of zeros, piece
/// by piece, without ever holding the decoded data or the whole member.
///
/// One MiB of zeros is compressed once and ended with a full flush, which
/// byte-aligns the output and keeps later blocks from referring to earlier
/// ones. Because all decoded data is zeros, the same segment can be
/// repeated to build a valid deflate stream of any length.
fn gzip_zero_bomb(segments: u64) -> impl Iterator<Item = Vec<u8>> {
    let mut deflater = Compress::new(Compression::best(), false);
    let mut segment = vec![0; 64 * 1024];
    deflater
        .compress(&vec![0; BOMB_SEGMENT], &mut segment, FlushCompress::Full)
        .unwrap();
    assert_eq!(deflater.total_in(), BOMB_SEGMENT as u64);
    segment.truncate(deflater.total_out() as usize);

    let mut segment_crc = Crc::new();
    segment_crc.update(&vec![0; BOMB_SEGMENT]);
    let mut total_crc = Crc::new();
    for _ in 0..segments {
        total_crc.combine(&segment_crc);
    }
    let total_len = segments * BOMB_SEGMENT as u64;
    // An empty final block with fixed Huffman codes: BFINAL 1, BTYPE 01,
    // then the end-of-block code 0000000.
    let mut end = vec![0x03, 0x00];
    end.extend_from_slice(&total_crc.sum().to_le_bytes());
    end.extend_from_slice(&(total_len as u32).to_le_bytes());

    let header = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255];
    std::iter::once(header)
        .chain(std::iter::repeat(segment).take(segments as usize))
        .chain(std::iter::once(end))
}

#[test]
fn gzip_bomb_generator_is_valid() {
    let bomb: Vec<u8> = gzip_zero_bomb(3).flatten().collect();
    let decoded = reference_decode(Form::Coding(ContentCoding::Gzip), &bomb);
    assert_eq!(decoded.len(), 3 * BOMB_SEGMENT);
    assert!(decoded.iter().all(|&byte| byte == 0));
    assert!(decode(ContentCoding::Gzip, &bomb).unwrap() == decoded);
}

/// Environment variable that makes `gzip_bomb_child` print its peak memory.
const BOMB_CHILD_ENV: &str = "DTREDACT_CODEC_BOMB_CHILD";

/// Returns the peak resident set size of this process in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Feeds a 2 GiB gzip bomb to a decoder limited to 64 MiB; run in its own
/// process by `gzip_bomb_is_rejected_in_bounded_memory`.
#[test]
#[ignore = "run in a child process by gzip_bomb_is_rejected_in_bounded_memory"]
fn gzip_bomb_child() {
    let limits = Limits {
        max_decoded: 64 << 20,
        max_ratio: u64::MAX,
    };
    let mut decoder = Decoder::new(ContentCoding::Gzip, limits);
    let mut decoded = Vec::new();

    let mut pushed = 0;
    let mut result = Ok(());
    // 16 KiB at a time, as HTTP body frames arrive.
    let frame_len = 16 * 1024;
    let mut frame = Vec::with_capacity(2 * frame_len);
    for piece in gzip_zero_bomb(2048) {
        frame.extend_from_slice(&piece);
        if frame.len() < frame_len {
            continue;
        }
        result = decoder.push(&frame, &mut decoded);
        pushed += frame.len();
        frame.clear();
        // The proxy hands each output to the redactor and reuses the buffer.
        decoded.clear();
        if result.is_err() {
            break;
        }
    }

    assert_eq!(
        result,
        Err(CodecError::TooLarge {
            coding: ContentCoding::Gzip,
            limit: 64 << 20
        })
    );
    assert!(decoder.decoded_bytes() <= 64 << 20);
    // Deflate expands at most 1032:1, so 64 MiB needs at least 64 KiB of
    // input; a decoder that stops at the limit needs little more.
    assert!(
        pushed < 256 * 1024,
        "pushed {pushed} bytes before the error"
    );
    if std::env::var_os(BOMB_CHILD_ENV).is_some() {
        println!("vmhwm_kib={} pushed={pushed}", peak_rss_kib());
    }
}

#[test]
fn gzip_bomb_is_rejected_in_bounded_memory() {
    // The child runs alone, so its peak memory is not mixed with that of
    // other tests running in parallel threads.
    let module = module_path!().split_once("::").unwrap().1;
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            &format!("{module}::gzip_bomb_child"),
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(BOMB_CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    let peak_kib: u64 = stdout
        .split("vmhwm_kib=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no vmhwm_kib in child output:\n{stdout}"))
        .parse()
        .unwrap();
    println!("gzip bomb child: peak RSS {peak_kib} KiB");
    assert!(peak_kib < 200 * 1024, "peak RSS {peak_kib} KiB");
}
