# frozen_string_literal: true

# bunker's Ruby client: sandboxed eval with mquickjs-ruby's API shape (`Bunker.eval`,
# `Bunker::Sandbox`), and `Bunker.run` for whole programs. It talks to a `bunker serve` daemon
# (`socket:` or `BUNKER_SOCKET`) or, without one, spawns the `bunker` CLI. Standard library only.

require "pathname"
require_relative "bunker/version"
require_relative "bunker/errors"
require_relative "bunker/connection"
require_relative "bunker/daemon"
require_relative "bunker/policy"
require_relative "bunker/result"
require_relative "bunker/run"
require_relative "bunker/running_process"
require_relative "bunker/eval"
require_relative "bunker/cli_eval"
require_relative "bunker/sandbox"
