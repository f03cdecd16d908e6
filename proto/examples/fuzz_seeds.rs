//! Writes seed inputs for the fuzz targets (`fuzz/`), built from
//! [`krb5_wss_proto::samples`]: `fuzz_seeds DIR` creates
//! `DIR/<target>/seed-N` files (used by `scripts/fuzz`).

use krb5_wss_proto::{framing, kkdcp, samples};
use std::path::Path;

fn write(dir: &Path, target: &str, seeds: &[Vec<u8>]) -> std::io::Result<()> {
    let d = dir.join(target);
    std::fs::create_dir_all(&d)?;
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(d.join(format!("seed-{i}")), s)?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os().nth(1).ok_or("usage: fuzz_seeds DIR")?;
    let dir = Path::new(&dir);
    let as_req = samples::as_req("EXAMPLE.COM");
    let tgs_req = samples::tgs_req("EXAMPLE.COM");
    let kpasswd = samples::kpasswd_req(1, "EXAMPLE.COM");
    let set_pw = samples::kpasswd_req(0xff80, "EXAMPLE.COM");
    let error = samples::krb_error(52, "EXAMPLE.COM");

    // framing: limit byte, chunk seed, then a stream of records.
    let mut stream = vec![8u8, 3];
    stream.extend(framing::encode(&as_req));
    stream.extend(framing::encode(&tgs_req));
    let mut bad = vec![2u8, 1];
    bad.extend(framing::encode(b"abc"));
    bad.extend([0x80, 0, 0, 1]);
    write(dir, "framing", &[stream, bad])?;

    write(
        dir,
        "kdc_request",
        &[as_req.clone(), tgs_req.clone(), error],
    )?;
    write(dir, "kpasswd_request", &[kpasswd.clone(), set_pw])?;
    write(
        dir,
        "kkdcp",
        &[
            kkdcp::encode_request(&as_req, Some("EXAMPLE.COM"))?,
            kkdcp::encode_request(&kpasswd, None)?,
            kkdcp::encode(&framing::encode(&tgs_req))?,
        ],
    )?;
    Ok(())
}
