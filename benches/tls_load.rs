//! TLS handshake load for `benches/run.sh`'s handshake rows (n–s): a new connection per request,
//! full handshakes or resumed ones.
//!
//! ```text
//! tls-load --port PORT --conns C --duration 5s [--path /public] [--resume]
//!          [--cookie NAME=VALUE] [--threads T] [--timeout 5s] [--check]
//! ```
//!
//! Each of C loops repeats until the duration is over: connect to 127.0.0.1:PORT, TLS handshake
//! (ALPN `http/1.1`, SNI `localhost`), one `GET PATH` with `Connection: close`, read the
//! response to its end (TLS 1.3 tickets arrive with it), close. Without `--resume` no session is
//! ever offered, so every handshake is a full one; with it each loop keeps its own ticket store
//! and offers the ticket of its previous connection, so after its first connection every
//! handshake is a resumption when the server accepts it.
//!
//! Why a client of our own: the rows measure the *server*'s handshakes, so the client must cost
//! less than the server. wrk and h2load resume on every reconnect and say nothing of which
//! handshakes resumed. The Python client this replaces (`ssl` over OpenSSL, processes × threads)
//! spent about 1.2 ms of CPU per connection, three times the server's, and held 130–150 % of the
//! machine's two cores: the rows measured it, and nginx and doorman came out level whatever
//! each spent. This one runs the loops as tasks on a multi-threaded tokio runtime over rustls
//! with the ring provider.
//!
//! The server's certificate chain is not validated (the run makes its own self-signed
//! certificates), but its handshake signature is verified as any client verifies it, so the
//! client does the work a browser does per handshake, less the chain.
//!
//! Prints one line, as `benches/conf/wrk-report.lua` does, plus what the handshakes were:
//!
//! ```text
//! WRKRESULT rps=.. p50_ms=.. p90_ms=.. p99_ms=.. max_ms=.. requests=N non2xx=N sockerr=N
//!           resumed=N full=N
//! ```
//!
//! Latency is per request *including* connect and handshake. `--check`: one connection (two with
//! `--resume`), print `STATUS resumed|full` for each, exit 0 when every status was 200.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use doorman::config::parse_duration;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Args {
    port: u16,
    conns: usize,
    duration: Duration,
    path: String,
    resume: bool,
    cookie: Option<String>,
    threads: usize,
    timeout: Duration,
    check: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 0,
        conns: 16,
        duration: Duration::from_secs(5),
        path: "/public".into(),
        resume: false,
        cookie: None,
        threads: std::thread::available_parallelism().map_or(1, usize::from),
        timeout: Duration::from_secs(5),
        check: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => args.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--conns" => args.conns = value()?.parse().map_err(|e| format!("--conns: {e}"))?,
            "--duration" => args.duration = parse_duration(&value()?)?,
            "--path" => args.path = value()?,
            "--resume" => args.resume = true,
            "--cookie" => args.cookie = Some(value()?).filter(|c| !c.is_empty()),
            "--threads" => {
                args.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?
            }
            "--timeout" => args.timeout = parse_duration(&value()?)?,
            "--check" => args.check = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.port == 0 {
        return Err("--port is required".into());
    }
    Ok(args)
}

/// Accepts any certificate chain, and verifies the handshake's signature with it.
#[derive(Debug)]
struct UncheckedChain(Arc<CryptoProvider>);

impl ServerCertVerifier for UncheckedChain {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One loop's client: its own ticket store when resuming, so each loop resumes its own
/// previous session (a shared store would hand one loop's ticket to another, and run dry).
fn connector(resume: bool) -> Result<TlsConnector, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(UncheckedChain(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = if resume {
        Resumption::in_memory_sessions(4)
    } else {
        Resumption::disabled()
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

/// One connection, one request: the response's status and whether the handshake resumed.
async fn one(
    connector: &TlsConnector,
    port: u16,
    request: &[u8],
    response: &mut Vec<u8>,
) -> std::io::Result<(u16, bool)> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    let mut tls = connector.connect(name, tcp).await?;
    let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
    tls.write_all(request).await?;
    response.clear();
    // To the end: the server closes after the response (`Connection: close`). A close without
    // close_notify after the response is the server's choice, not a failed request.
    match tls.read_to_end(response).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e),
    }
    let status = response
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, resumed))
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    non2xx: u64,
    sockerr: u64,
    resumed: u64,
    full: u64,
}

async fn run_loop(args: Arc<Args>, request: Arc<[u8]>, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let Ok(connector) = connector(args.resume) else {
        tally.sockerr += 1;
        return tally;
    };
    let mut response = Vec::with_capacity(1024);
    while Instant::now() < deadline {
        let start = Instant::now();
        let attempt = one(&connector, args.port, &request, &mut response);
        match tokio::time::timeout(args.timeout, attempt).await {
            Ok(Ok((status, resumed))) => {
                tally.latencies.push(start.elapsed());
                if !(200..300).contains(&status) {
                    tally.non2xx += 1;
                }
                if resumed {
                    tally.resumed += 1;
                } else {
                    tally.full += 1;
                }
            }
            _ => tally.sockerr += 1,
        }
    }
    tally
}

fn request(args: &Args) -> Vec<u8> {
    let cookie = args
        .cookie
        .as_deref()
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{cookie}Connection: close\r\n\r\n",
        args.path, args.port
    )
    .into_bytes()
}

async fn check(args: &Args) -> Result<bool, String> {
    let connector = connector(args.resume).map_err(|e| e.to_string())?;
    let request = request(args);
    let mut response = Vec::new();
    let mut ok = true;
    for _ in 0..if args.resume { 2 } else { 1 } {
        let (status, resumed) = one(&connector, args.port, &request, &mut response)
            .await
            .map_err(|e| e.to_string())?;
        println!("{status} {}", if resumed { "resumed" } else { "full" });
        ok &= status == 200;
    }
    Ok(ok)
}

async fn load(args: Args) -> String {
    let args = Arc::new(args);
    let request: Arc<[u8]> = request(&args).into();
    let started = Instant::now();
    let deadline = started + args.duration;
    let loops: Vec<_> = (0..args.conns)
        .map(|_| tokio::spawn(run_loop(args.clone(), request.clone(), deadline)))
        .collect();
    let mut all = Tally::default();
    for handle in loops {
        let tally = handle.await.unwrap_or_else(|_| Tally {
            sockerr: 1,
            ..Tally::default()
        });
        all.latencies.extend(tally.latencies);
        all.non2xx += tally.non2xx;
        all.sockerr += tally.sockerr;
        all.resumed += tally.resumed;
        all.full += tally.full;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.latencies.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: usize| {
        all.latencies
            .get((all.latencies.len() * p / 100).min(all.latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| ms(*d))
    };
    format!(
        "WRKRESULT rps={:.1} p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} max_ms={:.3} requests={} \
         non2xx={} sockerr={} resumed={} full={}",
        all.latencies.len() as f64 / elapsed,
        pct(50),
        pct(90),
        pct(99),
        all.latencies.last().map_or(0.0, |d| ms(*d)),
        all.latencies.len(),
        all.non2xx,
        all.sockerr,
        all.resumed,
        all.full,
    )
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("tls-load: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tls-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.check {
        return match runtime.block_on(check(&args)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("tls-load --check: {e}");
                ExitCode::FAILURE
            }
        };
    }
    println!("{}", runtime.block_on(load(args)));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_asks_for_the_connection_to_close() {
        let args = Args {
            port: 8443,
            conns: 1,
            duration: Duration::from_secs(1),
            path: "/dashboard".into(),
            resume: false,
            cookie: Some("doorman_session=abc".into()),
            threads: 1,
            timeout: Duration::from_secs(1),
            check: false,
        };
        assert_eq!(
            request(&args),
            b"GET /dashboard HTTP/1.1\r\nHost: 127.0.0.1:8443\r\n\
              Cookie: doorman_session=abc\r\nConnection: close\r\n\r\n"
        );
    }
}
