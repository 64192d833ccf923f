# A small stand-in for the BOSH director's job template renderer, for the
# release tests. It reads one JSON request (path in ARGV[0]) and renders
# every template of one job the way the director does:
#
#   - the job's properties are the properties its spec declares, each taken
#     from the manifest properties by its dotted name, else the spec's
#     default (undeclared manifest properties are dropped);
#   - templates are ERB with trim_mode "-" and see p, if_p, spec, link and
#     if_link; p of a property that is unset and has no default raises
#     "Can't find property", link of a missing link raises "Can't find link";
#   - a link's p/if_p read the provider's link properties, its instances
#     have name, id, index, az, address and bootstrap.
#
# Request:
#   {"job_dir": ".../jobs/pcap-agent", "out_dir": "...",
#    "properties": {...manifest job properties...},
#    "spec": {"name": ..., "index": 0, "id": ..., "address": ..., "ip": ...,
#             "deployment": ..., "az": ..., "bootstrap": true},
#    "links": {"pcap-agent": {"properties": {...}, "address": "...",
#              "instances": [{"name": ..., "index": 0, ...}]}},
#    "provides": "pcap-agent"}   # optional: also print that link's properties
#
# Output: the rendered files under out_dir (at each template's destination)
# and, on stdout, JSON {"provides": {...link properties...}} when asked. On
# a template error it prints "Error filling in template '<name>' (line N:
# message)" on stderr, like the director, and exits 1.

require "erb"
require "json"
require "yaml"
require "ostruct"
require "fileutils"

class UnknownProperty < StandardError
  def initialize(names)
    super("Can't find property '#{names.inspect}'")
  end
end

class UnknownLink < StandardError
  def initialize(name)
    super("Can't find link '#{name}'")
  end
end

# Looks a dotted name up in nested hashes; returns [found, value].
def dig_dotted(hash, name)
  cur = hash
  name.split(".").each do |part|
    return [false, nil] unless cur.is_a?(Hash) && cur.key?(part)
    cur = cur[part]
  end
  [true, cur]
end

def set_dotted(hash, name, value)
  parts = name.split(".")
  last = parts.pop
  cur = parts.inject(hash) { |h, part| h[part] ||= {} }
  cur[last] = value
end

# The job's effective properties: declared ones only, manifest over default.
def effective_properties(spec_properties, manifest)
  result = {}
  (spec_properties || {}).each do |name, definition|
    found, value = dig_dotted(manifest || {}, name)
    value = (definition || {})["default"] unless found && !value.nil?
    set_dotted(result, name, value)
  end
  result
end

class ElseBlock
  def initialize(active)
    @active = active
  end

  def else
    yield if @active
  end
end

module PropertyLookup
  UNSET = Object.new

  def lookup_property(props, names, default)
    names = Array(names)
    names.each do |name|
      found, value = dig_dotted(props, name)
      return value if found && !value.nil?
    end
    return default unless default.equal?(UNSET)
    raise UnknownProperty.new(names)
  end

  def lookup_if_p(props, names)
    values = names.map do |name|
      found, value = dig_dotted(props, name)
      return ElseBlock.new(true) unless found && !value.nil?
      value
    end
    yield(*values)
    ElseBlock.new(false)
  end

  # p and if_p as BOSH templates call them, on the including object's
  # @props (a link's or the job's).
  def p(names, default = UNSET)
    lookup_property(@props, names, default)
  end

  def if_p(*names, &block)
    lookup_if_p(@props, names, &block)
  end
end

class Link
  include PropertyLookup
  attr_reader :instances, :address

  def initialize(data)
    @props = data["properties"] || {}
    @address = data["address"]
    @instances = (data["instances"] || []).map do |i|
      OpenStruct.new(name: i["name"], id: i["id"], index: i["index"], az: i["az"],
                     address: i["address"], bootstrap: i["bootstrap"] || false)
    end
  end
end

class RenderContext
  include PropertyLookup
  attr_reader :spec

  def initialize(props, spec, links)
    @props = props
    @spec = spec
    @links = links
  end

  def link(name)
    raise UnknownLink.new(name) unless @links.key?(name)
    @links[name]
  end

  def if_link(name)
    return ElseBlock.new(true) unless @links.key?(name)
    yield @links[name]
    ElseBlock.new(false)
  end

  def get_binding
    binding
  end
end

req = JSON.parse(File.read(ARGV.fetch(0)))
job_dir = req.fetch("job_dir")
job_spec = YAML.safe_load(File.read(File.join(job_dir, "spec")))
props = effective_properties(job_spec["properties"], req["properties"])

declared = (job_spec["consumes"] || []).map { |c| c["name"] }
links = {}
(req["links"] || {}).each do |name, data|
  raise "link #{name} is not consumed by #{job_spec["name"]}" unless declared.include?(name)
  links[name] = Link.new(data)
end

s = req["spec"] || {}
spec = OpenStruct.new(
  name: s["name"], index: s["index"], id: s["id"], address: s["address"], ip: s["ip"],
  deployment: s["deployment"], az: s["az"], bootstrap: s.fetch("bootstrap", true),
  job: OpenStruct.new(name: job_spec["name"]),
)

out_dir = req.fetch("out_dir")
(job_spec["templates"] || {}).each do |src, dst|
  template = File.read(File.join(job_dir, "templates", src))
  erb = ERB.new(template, trim_mode: "-")
  erb.filename = src
  begin
    rendered = erb.result(RenderContext.new(props, spec, links).get_binding)
  rescue StandardError, ScriptError => e
    frame = e.backtrace.to_a.find { |l| l.start_with?("#{src}:") }
    line = frame ? frame.split(":")[1] : "?"
    warn "Error filling in template '#{src}' (line #{line}: #{e.message})"
    exit 1
  end
  path = File.join(out_dir, dst)
  FileUtils.mkdir_p(File.dirname(path))
  File.write(path, rendered)
end

if (name = req["provides"])
  provided = (job_spec["provides"] || []).find { |l| l["name"] == name }
  raise "#{job_spec["name"]} provides no link #{name}" unless provided
  link_props = {}
  (provided["properties"] || []).each do |prop|
    found, value = dig_dotted(props, prop)
    set_dotted(link_props, prop, value) if found
  end
  puts JSON.generate({ "provides" => link_props })
end
