//! A small SMTP server on 127.0.0.1 for the email tests: speaks enough ESMTP
//! for a real client (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT), records what
//! it accepts, and answers from a script so tests can refuse messages.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

impl Mail {
    /// The value of the first header called `name` (unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.split("\r\n").find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

#[derive(Default)]
struct State {
    accepted: Vec<Mail>,
    /// Replies to the end of DATA, used before the default 250.
    data_replies: VecDeque<String>,
    /// Recipients refused at RCPT with this reply.
    refused: HashMap<String, String>,
    data_attempts: usize,
}

#[derive(Clone)]
pub struct SmtpServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(session(socket, shared.clone()));
            }
        });
        SmtpServer { addr, state }
    }

    /// Answers the next ends of DATA with these replies (e.g. `"451 4.7.1 later"`).
    pub fn script_data(&self, replies: &[&str]) {
        let mut s = self.state.lock().expect("lock");
        s.data_replies.extend(replies.iter().map(|r| r.to_string()));
    }

    /// Refuses `address` at RCPT with `reply`.
    pub fn refuse(&self, address: &str, reply: &str) {
        let mut s = self.state.lock().expect("lock");
        s.refused.insert(address.to_string(), reply.to_string());
    }

    pub fn accepted(&self) -> Vec<Mail> {
        self.state.lock().expect("lock").accepted.clone()
    }

    /// How many times a client got as far as the end of DATA.
    pub fn data_attempts(&self) -> usize {
        self.state.lock().expect("lock").data_attempts
    }

    pub async fn wait_for(&self, n: usize) -> Vec<Mail> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.accepted();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {n} mails");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn session(socket: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 patchbay-test ESMTP\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::<String>::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" => "250-patchbay-test\r\n250-8BITMIME\r\n250 SMTPUTF8".to_string(),
            "HELO" => "250 patchbay-test".to_string(),
            "MAIL" => {
                from = angle(&command);
                to.clear();
                "250 2.1.0 Ok".to_string()
            }
            "RCPT" => {
                let rcpt = angle(&command);
                let refused = state.lock().expect("lock").refused.get(&rcpt).cloned();
                match refused {
                    Some(reply) => reply,
                    None => {
                        to.push(rcpt);
                        "250 2.1.5 Ok".to_string()
                    }
                }
            }
            "DATA" => {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    // Dot-stuffing: a leading ".." stands for ".".
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                let mut s = state.lock().expect("lock");
                s.data_attempts += 1;
                match s.data_replies.pop_front() {
                    Some(reply) => reply,
                    None => {
                        s.accepted.push(Mail {
                            from: from.clone(),
                            to: to.clone(),
                            data,
                        });
                        format!("250 2.0.0 Ok: queued as Q{}", s.accepted.len())
                    }
                }
            }
            "RSET" => {
                from.clear();
                to.clear();
                "250 2.0.0 Ok".to_string()
            }
            "NOOP" => "250 2.0.0 Ok".to_string(),
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 Command not recognized".to_string(),
        };
        write.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
}

/// The address inside `<…>` of a MAIL or RCPT command.
fn angle(command: &str) -> String {
    command
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(address, _)| address.to_string())
        .unwrap_or_default()
}
