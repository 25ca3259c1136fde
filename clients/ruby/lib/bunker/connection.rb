# frozen_string_literal: true

require "socket"
require "json"

module Bunker
  # One connection to a `bunker serve` daemon (docs/protocol.md): frames are a 4-byte big-endian
  # length and that many bytes of UTF-8 JSON; the first frame each way is the `hello` handshake.
  # Requests are sent one at a time (a mutex), so the frames that arrive before a reply are that
  # request's events.
  class Connection
    attr_reader :path, :server

    def initialize(path)
      @path = path.to_s
      @next_id = 0
      @lock = Mutex.new
      @closed = false
      begin
        @sock = UNIXSocket.new(@path)
      rescue Errno::ENOENT, Errno::ECONNREFUSED, Errno::ENOTSOCK, Errno::EACCES, Errno::ENOTDIR => e
        raise UnavailableError, "no bunker daemon answers on #{@path}: #{e.message}"
      end
      handshake
    end

    # Sends `{"id": N, "op": op, **fields}` and returns the reply's `ok` object; an `error` reply
    # raises it. Each event frame of the request is yielded to the block (or dropped).
    def request(op, fields = {}, &on_event)
      @lock.synchronize do
        raise UnavailableError, "the connection to #{@path} is closed" if @closed

        id = (@next_id += 1)
        write_frame({ "id" => id, "op" => op }.merge(fields))
        loop do
          frame = read_frame
          if frame.key?("event")
            on_event&.call(frame["event"]) if frame["id"] == id
            next
          end
          next unless frame["id"] == id || !frame.key?("id")
          raise Bunker.error_from_api(frame["error"]) if frame.key?("error")

          return frame["ok"]
        end
      end
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
