//! Value parsers shared by the subcommands: whole numbers in a range, and gateway URLs, checked
//! while the command line is parsed (so a bad value is a usage error, exit 2, naming the range).

use std::ops::RangeInclusive;

/// A `clap` value parser for a whole number in `range`, with an error that names the range.
///
/// Use with `allow_negative_numbers = true`, so that `-1` reaches it (and is refused with the
/// range) instead of being taken for a flag.
pub fn number<T>(
    range: RangeInclusive<u64>,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: TryFrom<u64>,
{
    move |s: &str| {
        let expected = || {
            if *range.end() == u64::MAX {
                format!("expected a whole number, at least {}", range.start())
            } else {
                format!(
                    "expected a whole number from {} to {}",
                    range.start(),
                    range.end()
                )
            }
        };
        let n: u64 = s.trim().parse().map_err(|_| expected())?;
        if !range.contains(&n) {
            return Err(expected());
        }
        T::try_from(n).map_err(|_| expected())
    }
}

/// A `clap` value parser for a gateway URL (`--via` of `query`): a scheme the SDK knows and a
/// `host:port`, and no path for gRPC.
pub fn gateway_url(s: &str) -> Result<String, String> {
    let remote = claude_conduit::remote::Remote::parse(s, "token").map_err(|e| {
        format!(
            "{e}; expected ws://HOST:PORT, wss://…, http://…, https://…, grpc://…, grpcs://… or \
             redis://…"
        )
    })?;
    let scheme = s
        .split("://")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if scheme.starts_with("grpc") && !remote.prefix().is_empty() {
        return Err(format!(
            "a gRPC gateway URL has no path (got `{}`)",
            remote.prefix()
        ));
    }
    Ok(s.to_owned())
}

/// A `clap` value parser for `bench --via`: `ws`, `http`, `grpc` (a gateway in this process) or
/// a gateway URL.
pub fn bench_via(s: &str) -> Result<String, String> {
    match s {
        "ws" | "http" | "grpc" => Ok(s.to_owned()),
        url if url.contains("://") => gateway_url(url),
        other => Err(format!(
            "unknown transport `{other}`: expected ws, http or grpc (a gateway in this process), \
             or a gateway URL (ws://HOST:PORT, grpc://HOST:PORT, …)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_outside_the_range_name_it() {
        let p = number::<u32>(1..=1000);
        assert_eq!(p("7"), Ok(7));
        for bad in ["0", "-1", "1001", "x", ""] {
            assert_eq!(
                p(bad),
                Err("expected a whole number from 1 to 1000".to_owned()),
                "{bad}"
            );
        }
        let open = number::<u64>(1..=u64::MAX);
        assert_eq!(
            open("0"),
            Err("expected a whole number, at least 1".to_owned())
        );
    }

    #[test]
    fn via_values() {
        assert!(bench_via("ws").is_ok());
        assert!(bench_via("grpc://127.0.0.1:1").is_ok());
        let e = bench_via("carrier-pigeon").unwrap_err();
        assert!(e.contains("expected ws, http or grpc"), "{e}");
        assert!(gateway_url("ftp://h:1").is_err());
        assert!(gateway_url("127.0.0.1:8992").is_err());
        assert!(gateway_url("grpc://h:1/x").is_err());
        assert!(gateway_url("wss://h:1/gw").is_ok());
    }
}
