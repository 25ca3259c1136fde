# frozen_string_literal: true

module Bunker
  # Which daemon a call talks to, and each thread's kept connection to it.
  module Daemon
    class << self
      # The socket to use: the explicit `socket:` option, else `BUNKER_SOCKET`; nil means the CLI
      # fallback. An explicit socket (or `BUNKER_SOCKET`) that does not answer is an
      # `unavailable` error, never a silent fallback.
      def socket_for(socket)
        return socket.to_s if socket

        env = ENV.fetch("BUNKER_SOCKET", "")
        env.empty? ? nil : env
      end

      # This thread's connection to `path`, kept for its later calls (opened on first use, and
      # again after it was lost or in a forked child). One per thread, so threads' calls run
      # concurrently (a connection carries one request at a time).
      def shared(path)
        connections = (Thread.current[:bunker_connections] ||= {})
        conn = connections[[path, Process.pid]]
        return conn if conn && !conn.closed?

        connections[[path, Process.pid]] = Connection.new(path)
      end

      # Closes this thread's kept connections (e.g. before the daemon is restarted).
      def close_all
        connections = Thread.current[:bunker_connections] || {}
        connections.each_value(&:close)
        connections.clear
      end
    end
  end

  # The `bunker` binary for the CLI fallback (and for `bunker check`): the `bunker_bin:` option,
  # else `BUNKER_BIN`, else `bunker` on PATH.
  def self.bunker_bin(explicit = nil)
    return explicit.to_s if explicit

    env = ENV.fetch("BUNKER_BIN", "")
    env.empty? ? "bunker" : env
  end
end
