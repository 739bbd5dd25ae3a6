//! A TCP proxy the tests can cut and restore, to make a real server "go away".

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

#[derive(Default)]
struct State {
    open: bool,
    connections: Vec<AbortHandle>,
}

pub struct TcpProxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: AbortHandle,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards to `target` while open.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State { open: true, connections: Vec::new() }));
        let accept = tokio::spawn({
            let state = state.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !state.lock().expect("lock").open {
                        drop(inbound); // refused: the "server" is gone
                        continue;
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    let mut state = state.lock().expect("lock");
                    state.connections.retain(|c| !c.is_finished());
                    state.connections.push(task.abort_handle());
                }
            }
        })
        .abort_handle();
        TcpProxy { addr, state, accept }
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        let mut state = self.state.lock().expect("lock");
        state.open = false;
        for connection in state.connections.drain(..) {
            connection.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.state.lock().expect("lock").open = true;
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
