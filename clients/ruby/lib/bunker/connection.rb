# frozen_string_literal: true

require "socket"
require "json"

module Bunker
  # One connection to a `bunker serve` daemon (docs/protocol.md): frames are a 4-byte big-endian
  # length and that many bytes of UTF-8 JSON; the first frame each way is the `hello` handshake.
  # One request is in flight at a time (a mutex); the event frames read meanwhile go to the
  # handler of the request they name.
  class Connection
    attr_reader :path, :server

    def initialize(path)
      @path = path.to_s
      @next_id = 0
      @lock = Mutex.new
      @handlers = {} # request id => the block its events go to
      @replies = {}  # request id => its reply frame, until the request takes it
      @closed = false
      begin
        @sock = UNIXSocket.new(@path)
      rescue Errno::ENOENT, Errno::ECONNREFUSED, Errno::ENOTSOCK, Errno::EACCES, Errno::ENOTDIR => e
        raise UnavailableError, "no bunker daemon answers on #{@path}: #{e.message}"
      end
      handshake
    end

    # Sends `{"id": N, "op": op, **fields}` and returns the reply's `ok` object; an `error` reply
    # raises it. The request's event frames go to the block while it waits (with `keep_events`,
    # also later, whenever this connection reads: a `start`ed sandbox's events).
    def request(op, fields = {}, keep_events: false, &on_event)
      @lock.synchronize do
        raise UnavailableError, "the connection to #{@path} is closed" if @closed

        id = (@next_id += 1)
        @handlers[id] = on_event if on_event
        begin
          write_frame({ "id" => id, "op" => op }.merge(fields))
          read_and_dispatch until @replies.key?(id)
        ensure
          @handlers.delete(id) unless keep_events
        end
        reply = @replies.delete(id)
        raise Bunker.error_from_api(reply["error"]) if reply.key?("error")

        reply["ok"]
      end
    end

    # Reads frames (dispatching their events) until `done` is true.
    def pump(done)
      @lock.synchronize { read_and_dispatch until done.call }
    end

    def close
      return if @closed

      @closed = true
      @sock.close
    rescue IOError
      nil
    end

    def closed?
      @closed
    end

    private

    def read_and_dispatch
      frame = read_frame
      if frame.key?("event")
        @handlers[frame["id"]]&.call(frame["event"])
      elsif frame.key?("id")
        @replies[frame["id"]] = frame
      elsif frame.key?("error")
        close # an error without an id is about the connection: the daemon closes it
        raise Bunker.error_from_api(frame["error"])
      end
    end

    def handshake
      write_frame({ "op" => "hello", "version" => PROTOCOL_VERSION })
      reply = read_frame
      raise Bunker.error_from_api(reply["error"]) if reply.key?("error")

      @server = reply.dig("ok", "server")
    end

    def write_frame(obj)
      payload = JSON.generate(obj).b
      @sock.write([payload.bytesize].pack("N"), payload)
    rescue Errno::EPIPE, Errno::ECONNRESET, IOError => e
      lost!(e)
    end

    def read_frame
      header = read_exactly(4)
      length = header.unpack1("N")
      raise Error.new("the daemon sent an empty frame", code: "protocol_error") if length.zero?

      JSON.parse(read_exactly(length).force_encoding(Encoding::UTF_8))
    rescue JSON::ParserError => e
      close
      raise Error.new("the daemon sent a frame that is not JSON: #{e.message}", code: "protocol_error")
    end

    def read_exactly(count)
      buf = +"".b
      while buf.bytesize < count
        chunk = @sock.read(count - buf.bytesize)
        lost!(nil) if chunk.nil? || chunk.empty?
        buf << chunk
      end
      buf
    rescue Errno::ECONNRESET, IOError => e
      lost!(e)
    end

    def lost!(cause)
      close
      why = cause ? ": #{cause.message}" : ""
      raise UnavailableError, "the connection to the bunker daemon at #{@path} was lost before the answer#{why}"
    end
  end
end
