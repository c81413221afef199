//! TCP listeners for the HTTP servers.

use axum::serve::{ListenerExt, TapIo};
use tokio::net::{TcpListener, TcpStream};

/// `listener` with `TCP_NODELAY` set on every accepted connection.
///
/// A response written while an earlier one is still unacknowledged would
/// otherwise wait for that ACK (Nagle's algorithm). hyper and tonic leave
/// the option to the caller when they are handed a listener.
pub fn no_delay(listener: TcpListener) -> TapIo<TcpListener, fn(&mut TcpStream)> {
    listener.tap_io(set_no_delay as fn(&mut TcpStream))
}

fn set_no_delay(stream: &mut TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "could not set TCP_NODELAY on an accepted connection");
    }
}
