# frozen_string_literal: true

module Bunker
  # Which daemon a call talks to, and the process's shared connections to it.
  module Daemon
    @connections = {}
    @lock = Mutex.new

    class << self
      # The socket to use: the explicit `socket:` option, else `BUNKER_SOCKET`; nil means the CLI
      # fallback. An explicit socket (or `BUNKER_SOCKET`) that does not answer is an
      # `unavailable` error, never a silent fallback.
      def socket_for(socket)
        return socket.to_s if socket

        env = ENV.fetch("BUNKER_SOCKET", "")
        env.empty? ? nil : env
      end

      # A connection to `path` shared by the calls of this process (opened on first use, opened
      # again after it was lost or after a fork).
      def shared(path)
        @lock.synchronize do
          key = [path, Process.pid]
          conn = @connections[key]
          if conn.nil? || conn.closed?
            conn = Connection.new(path)
            @connections[key] = conn
          end
          conn
        end
      end

      # Closes every shared connection (e.g. before the daemon is restarted).
      def close_all
        @lock.synchronize do
          @connections.each_value(&:close)
          @connections.clear
        end
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
