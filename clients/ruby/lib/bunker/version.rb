# frozen_string_literal: true

module Bunker
  VERSION = "0.1.0"
  # The daemon protocol version this client speaks (docs/protocol.md, "Handshake").
  PROTOCOL_VERSION = 1
end
