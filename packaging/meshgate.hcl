# /etc/meshgate/meshgate.hcl: the agent's configuration (HCL or JSON; every
# file in /etc/meshgate is read). See /usr/share/doc/meshgate and docs/agent.md.
#
# `meshgate setup` writes a complete configuration for a server or a client
# agent of a cluster; until then this file only sets what every agent needs.

data_dir    = "/var/lib/meshgate"
client_addr = "127.0.0.1"
log_level   = "info"

ui_config {
  enabled = true
}
