//! The sandbox's pid 1 and the messages it sends the supervisor over the control socket.
//! (being written — the message type below is the contract with `supervise.rs`)

/// What init tells the supervisor, one message per datagram on a SOCK_SEQPACKET socket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InitMessage {
    /// A setup step failed; nothing of the program ran.
    SetupFailed { step: String, errno: i32, detail: String },
    /// The program could not be executed (not found, not allowed).
    ExecFailed { program: String, errno: i32, detail: String },
    /// The program was executed (its exec succeeded).
    Started,
    /// The program ended (init exits right after sending this).
    Exited { code: Option<i32>, signal: Option<i32> },
}
