# A small Rack app, the shape of the seed's Puma service: JSON out, some survivors kept.
require "json"

CACHE = []

app = proc do |env|
  case env["PATH_INFO"]
  when "/healthz"
    [200, { "content-type" => "text/plain" }, ["ok"]]
  else
    CACHE << ("x" * (700 + CACHE.size % 3000)) if CACHE.size < 5000 && rand < 0.1
    body = JSON.generate(items: Array.new(40) { |i| { i: i, s: "y" * (i % 50) } }, cached: CACHE.size)
    [200, { "content-type" => "application/json" }, [body]]
  end
end

run app
