//! A TCP proxy the harness controls, between one replica and the apiserver or Vast: cut
//! off, it closes every connection it carries and refuses new ones until it is let
//! through again. TLS passes through untouched (the apiserver's certificate is for
//! 127.0.0.1, whatever the port).

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One proxy, listening on 127.0.0.1.
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and passes each connection on to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, rx) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                if *rx.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut a, mut b) = (inbound, outbound);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                        _ = rx.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Ok(Self { addr, cut })
    }

    /// Cuts every connection off (`true`) or lets them through again (`false`).
    pub fn cut(&self, on: bool) {
        self.cut.send_replace(on);
    }
}

/// The `host:port` of an `http(s)://host:port` URL.
pub fn socket_of(url: &str) -> Option<SocketAddr> {
    let rest = url.split("://").nth(1)?;
    rest.split('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_cut_closes_what_it_carries_and_refuses_new_connections() {
        let echo = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let upstream = echo.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let proxy = Proxy::start(upstream).await.expect("proxy");
        let mut c = TcpStream::connect(proxy.addr).await.expect("connect");
        c.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.expect("echoed");
        assert_eq!(&buf, b"ping");
        proxy.cut(true);
        // The carried connection ends: a read returns 0 or an error, never the echo.
        let _ = c.write_all(b"more").await;
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(5), c.read_to_end(&mut rest))
                .await
                .expect("the cut connection ends");
        assert!(read.is_err() || rest.is_empty(), "{rest:?}");
        // A new one is accepted and closed at once.
        let mut d = TcpStream::connect(proxy.addr).await.expect("connect");
        let _ = d.write_all(b"x").await;
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), d.read(&mut buf))
            .await
            .expect("closed at once");
        assert!(n.map_or(true, |n| n == 0));
        proxy.cut(false);
        let mut e = TcpStream::connect(proxy.addr).await.expect("connect");
        e.write_all(b"back").await.expect("write");
        e.read_exact(&mut buf).await.expect("echoed again");
        assert_eq!(&buf, b"back");
    }
}
