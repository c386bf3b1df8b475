//! The server of the browser chat demo (`web/run.sh` starts it): one portnet node that
//! - relays each chat line a `Ws` client sends to every client, sender included;
//! - serves the demo page's files over plain HTTP on portnet `Tcp` (GET only).
//!
//! ```text
//! cargo run --example chat-server -- --site target/web-demo/site [--http 127.0.0.1:8080]
//!     [--ws 127.0.0.1:0] [--port-file FILE]
//! ```
//!
//! The page asks `config.json` for the `Ws` port. With `--port-file` the HTTP port is written
//! there once the server listens (for scripts that start it on port 0).

use portnet::network::{Endpoint, NetEvent, Transport};
use portnet::node::{self, NodeEvent, NodeHandler};
use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

/// The longest chat line relayed; longer ones are refused with a note to the sender.
const MAX_LINE: usize = 2048;
/// The longest HTTP request head read before the connection is closed.
const MAX_REQUEST: usize = 8192;

struct Options {
    site: PathBuf,
    http: String,
    ws: String,
    port_file: Option<PathBuf>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        site: PathBuf::from("target/web-demo/site"),
        http: "127.0.0.1:8080".into(),
        ws: "127.0.0.1:0".into(),
        port_file: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--site" => options.site = value()?.into(),
            "--http" => options.http = value()?,
            "--ws" => options.ws = value()?,
            "--port-file" => options.port_file = Some(value()?.into()),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    Ok(options)
}

fn main() {
    let options = options().unwrap_or_else(|e| {
        eprintln!("chat-server: {e}");
        eprintln!("usage: chat-server [--site DIR] [--http ADDR] [--ws ADDR] [--port-file FILE]");
        std::process::exit(2);
    });
    if !options.site.join("index.html").is_file() {
        eprintln!("chat-server: no index.html in {}: build the site with web/build.sh", {
            options.site.display()
        });
        std::process::exit(1);
    }
    let (handler, listener) = node::split::<()>();
    let network = handler.network();
    let listen = |transport, addr: &str| {
        network.listen(transport, addr).unwrap_or_else(|e| {
            eprintln!("chat-server: cannot listen on {addr} ({transport}): {e}");
            std::process::exit(1);
        })
    };
    let (http_id, http_addr) = listen(Transport::Tcp, &options.http);
    let (_, ws_addr) = listen(Transport::Ws, &options.ws);
    if let Some(file) = &options.port_file {
        let partial = file.with_extension("partial");
        let written = std::fs::write(&partial, http_addr.port().to_string())
            .and_then(|()| std::fs::rename(&partial, file));
        if let Err(e) = written {
            eprintln!("chat-server: cannot write {}: {e}", file.display());
            std::process::exit(1);
        }
    }
    println!("portnet chat: open http://{http_addr}/ (chat over ws://{ws_addr}/chat)");

    let mut server = Server {
        handler: handler.clone(),
        site: options.site,
        ws_port: ws_addr.port(),
        clients: HashSet::new(),
        requests: HashMap::new(),
    };
    listener.for_each(move |event| match event {
        NodeEvent::Network(NetEvent::Accepted(endpoint, listener)) if listener == http_id => {
            server.requests.insert(endpoint, Vec::new());
        }
        NodeEvent::Network(NetEvent::Accepted(endpoint, _)) => {
            server.clients.insert(endpoint);
            server.broadcast(format!("* {} joined", endpoint.addr()).as_bytes());
        }
        NodeEvent::Network(NetEvent::Message(endpoint, data)) => {
            if server.clients.contains(&endpoint) {
                server.chat_line(endpoint, data);
            } else {
                server.http_bytes(endpoint, data);
            }
        }
        NodeEvent::Network(NetEvent::Disconnected(endpoint)) => {
            server.requests.remove(&endpoint);
            if server.clients.remove(&endpoint) {
                server.broadcast(format!("* {} left", endpoint.addr()).as_bytes());
            }
        }
        NodeEvent::Network(NetEvent::Connected(..)) | NodeEvent::Signal(()) => (),
    });
}

struct Server {
    handler: NodeHandler<()>,
    site: PathBuf,
    ws_port: u16,
    clients: HashSet<Endpoint>,
    /// HTTP connections and the bytes of their request so far.
    requests: HashMap<Endpoint, Vec<u8>>,
}

impl Server {
    fn broadcast(&self, line: &[u8]) {
        for client in &self.clients {
            self.handler.network().send(*client, line);
        }
    }

    fn chat_line(&self, from: Endpoint, data: &[u8]) {
        match std::str::from_utf8(data) {
            Ok(line) if line.len() <= MAX_LINE && !line.trim().is_empty() => {
                self.broadcast(line.as_bytes())
            }
            _ => {
                let note = format!("* not relayed: send UTF-8 text of at most {MAX_LINE} bytes");
                self.handler.network().send(from, note.as_bytes());
            }
        }
    }

    /// Plain `Tcp` delivers bytes as they come: gather a request head, then answer it.
    fn http_bytes(&mut self, endpoint: Endpoint, data: &[u8]) {
        let Some(request) = self.requests.get_mut(&endpoint) else { return };
        request.extend_from_slice(data);
        let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
            if request.len() > MAX_REQUEST {
                self.respond(endpoint, "431 Request Header Fields Too Large", "text/plain", b"");
            }
            return;
        };
        let head = String::from_utf8_lossy(&request[..end]).into_owned();
        let mut words = head.lines().next().unwrap_or("").split(' ');
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        if method != "GET" {
            return self.respond(endpoint, "405 Method Not Allowed", "text/plain", b"GET only\n");
        }
        let path = target.split(['?', '#']).next().unwrap_or("/");
        if path == "/config.json" {
            let body = format!("{{\"ws_port\": {}}}\n", self.ws_port);
            return self.respond(endpoint, "200 OK", "application/json", body.as_bytes());
        }
        match self.file(path) {
            Some((body, kind)) => self.respond(endpoint, "200 OK", kind, &body),
            None => self.respond(endpoint, "404 Not Found", "text/plain", b"not found\n"),
        }
    }

    /// A file of the site, with its content type; nothing outside the site.
    fn file(&self, path: &str) -> Option<(Vec<u8>, &'static str)> {
        let relative = Path::new(path.trim_start_matches('/'));
        if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
            return None;
        }
        let mut file = self.site.join(relative);
        if path.ends_with('/') {
            file.push("index.html");
        }
        let kind = match file.extension().and_then(|e| e.to_str()) {
            Some("html") => "text/html; charset=utf-8",
            Some("js") => "text/javascript",
            Some("wasm") => "application/wasm",
            Some("css") => "text/css",
            Some("json") => "application/json",
            _ => "application/octet-stream",
        };
        Some((std::fs::read(file).ok()?, kind))
    }

    fn respond(&mut self, endpoint: Endpoint, status: &str, kind: &str, body: &[u8]) {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let network = self.handler.network();
        network.send(endpoint, &[head.as_bytes(), body].concat());
        // What was sent is still written before the connection closes.
        network.remove(endpoint.resource_id());
        self.requests.remove(&endpoint);
    }
}
