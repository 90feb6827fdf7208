//! Forensic archive throughput: a node's instance data (1 GiB by default: half log-like text,
//! half incompressible bytes, in files of 64 KiB to 64 MiB) archived, countersigned, verified
//! and wiped with `strata_forensics`, beside `tar -c | zstd -3`, `zstd -d | tar -t` and
//! `shred -n 0 -z -u` of the same data in the same run (what an operator would do by hand,
//! without hashes, signatures or a check of the wipe); and the device wipe (`wipe_device`:
//! zeros to the end, synced, read back past the page cache) of an image of the same size,
//! beside `dd if=/dev/zero conv=fsync` over it and `dd iflag=direct | cmp` of it with zeros.
//!
//!   cargo bench -p strata-forensics --bench archive [-- --mib 1024]

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use strata_forensics::{countersign, verify, wipe, wipe_device, ArchiveBuilder, Origin, Signer};

fn main() {
    let mib: u64 = std::env::args()
        .skip_while(|a| a != "--mib")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1024);
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()))
            .expect("a scratch directory");
    let data = dir.path().join("data");
    let written = make_data(&data, mib << 20);
    sync();
    let (ca_pem, ca, node) = identities();

    let out = dir.path().join("node.strata-archive");
    let started = Instant::now();
    let mut builder = ArchiveBuilder::create(
        &out,
        Origin {
            node: "n1".into(),
            subject: "node".into(),
            created_at: 1_765_000_000_000,
            ..Origin::default()
        },
    )
    .unwrap();
    builder.add_path(&data, "data").unwrap();
    let built = builder.finish(&node).unwrap();
    let build_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    countersign(&out, &ca).unwrap();
    let countersign_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    verify(&out, &ca_pem, true).unwrap();
    let verify_s = started.elapsed().as_secs_f64();

    let plain = dir.path().join("plain.tar.zst");
    let started = Instant::now();
    shell(&format!(
        "tar -C {} -cf - data | zstd -q -3 -o {}",
        dir.path().display(),
        plain.display()
    ));
    let tar_zstd_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    shell(&format!(
        "zstd -q -d -c {} | tar -tf - > /dev/null",
        plain.display()
    ));
    let untar_s = started.elapsed().as_secs_f64();
    let plain_size = std::fs::metadata(&plain).unwrap().len();

    // The wipe, beside shred's one pass of zeros (then removal) on a copy of the same data.
    let copy = dir.path().join("copy");
    shell(&format!("cp -a {} {}", data.display(), copy.display()));
    sync();
    let started = Instant::now();
    let report = wipe(&data).unwrap();
    sync();
    let wipe_s = started.elapsed().as_secs_f64();
    assert_eq!(report.bytes, written);
    let started = Instant::now();
    shell(&format!(
        "find {} -type f -exec shred -n 0 -z -u {{}} + && rm -r {}",
        copy.display(),
        copy.display()
    ));
    sync();
    let shred_s = started.elapsed().as_secs_f64();

    // A device of the same size (an image file: the same writes, syncs and reads).
    let image = dir.path().join("device.img");
    shell(&format!(
        "head -c {written} /dev/urandom > {} && sync",
        image.display()
    ));
    let started = Instant::now();
    assert_eq!(wipe_device(&image).unwrap(), written);
    let device_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    shell(&format!(
        "dd if=/dev/zero of={} bs=1M count={} conv=fsync,notrunc status=none",
        image.display(),
        written >> 20
    ));
    let dd_s = started.elapsed().as_secs_f64();
    // The same check by hand: read back past the page cache, compared with zeros.
    let started = Instant::now();
    shell(&format!(
        "dd if={} iflag=direct bs=1M status=none | cmp -n {written} - /dev/zero",
        image.display()
    ));
    let cmp_s = started.elapsed().as_secs_f64();

    let mib_s = |seconds: f64| written as f64 / (1 << 20) as f64 / seconds;
    println!(
        "{} MiB in {} files; archive {:.0} MiB, tar | zstd {:.0} MiB",
        written >> 20,
        built.manifest.files.len(),
        built.size as f64 / (1 << 20) as f64,
        plain_size as f64 / (1 << 20) as f64
    );
    println!("| step | strata-forensics | tar + zstd -3 (no hashes, no signatures) |");
    println!("|---|---:|---:|");
    println!(
        "| archive (read, hash, compress, sign) | {build_s:.2} s ({:.0} MiB/s) | {tar_zstd_s:.2} s ({:.0} MiB/s) |",
        mib_s(build_s),
        mib_s(tar_zstd_s)
    );
    println!(
        "| countersign (verify all, then sign) | {countersign_s:.2} s ({:.0} MiB/s) | - |",
        mib_s(countersign_s)
    );
    println!(
        "| verify offline (every file's hash) | {verify_s:.2} s ({:.0} MiB/s) | {untar_s:.2} s to list ({:.0} MiB/s) |",
        mib_s(verify_s),
        mib_s(untar_s)
    );
    println!(
        "| wipe (zeros, synced, read back, removed) | {wipe_s:.2} s ({:.0} MiB/s) | `shred -n 0 -z -u`: {shred_s:.2} s ({:.0} MiB/s, not read back) |",
        mib_s(wipe_s),
        mib_s(shred_s)
    );
    println!(
        "| device wipe (zeros, synced, read back from the device) | {device_s:.2} s ({:.0} MiB/s) | `dd conv=fsync` {dd_s:.2} s, then `dd iflag=direct | cmp` {cmp_s:.2} s: {:.2} s ({:.0} MiB/s) |",
        mib_s(device_s),
        dd_s + cmp_s,
        mib_s(dd_s + cmp_s)
    );
}

/// `bytes` of instance data under `root`; what was written.
fn make_data(root: &Path, bytes: u64) -> u64 {
    let mut written = 0u64;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let sizes = [64 << 10, 1 << 20, 8 << 20, 64 << 20];
    let mut index = 0;
    while written < bytes {
        let instance = root.join(format!("instances/i-{}", index % 16));
        std::fs::create_dir_all(&instance).unwrap();
        let size = sizes[index % sizes.len()].min(bytes - written);
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(instance.join(format!("f-{index}"))).unwrap(),
        );
        let mut left = size;
        // Every other round of the four sizes is text: half the bytes compress.
        let text = (index / sizes.len()) % 2 == 0;
        while left > 0 {
            let chunk: Vec<u8> = if text {
                format!(
                    "2026-12-06T12:00:00Z INFO request id={} path=/api/v1/items status=200 took={}us\n",
                    next() % 1_000_000,
                    next() % 10_000
                )
                .into_bytes()
            } else {
                (0..512).map(|_| next() as u8).collect()
            };
            let n = chunk.len().min(left as usize);
            file.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
        file.flush().unwrap();
        written += size;
        index += 1;
    }
    written
}

fn sync() {
    shell("sync");
}

fn shell(script: &str) {
    let status = Command::new("sh").arg("-c").arg(script).status().unwrap();
    assert!(status.success(), "{script}");
}

/// The cluster CA's certificate, the CA as a signer, and node n1's signer.
fn identities() -> (String, Signer, Signer) {
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "bench CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = params.self_signed(&ca_key).unwrap();
    let node_key = KeyPair::generate().unwrap();
    let mut node = CertificateParams::default();
    node.subject_alt_names = vec![SanType::DnsName("n1.node.strata".try_into().unwrap())];
    let issuer = Issuer::from_ca_cert_pem(
        &ca_cert.pem(),
        KeyPair::from_pem(&ca_key.serialize_pem()).unwrap(),
    )
    .unwrap();
    let node_cert = node.signed_by(&node_key, &issuer).unwrap();
    (
        ca_cert.pem(),
        Signer::from_pem("CA key", &ca_cert.pem(), &ca_key.serialize_pem()).unwrap(),
        Signer::from_pem("node key", &node_cert.pem(), &node_key.serialize_pem()).unwrap(),
    )
}
