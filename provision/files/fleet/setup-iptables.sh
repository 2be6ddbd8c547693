#!/bin/sh
# @@HOST@@ (fleet): the guide's iptables firewall instead of ufw (Security Hardening > Network
# Security: "Configure iptables (if not using ufw)"), saved for netfilter-persistent, which
# restores it at boot; root's crontab. Idempotent: the INPUT chain is rebuilt from the guide's rules.
set -eu
iptables -F INPUT
iptables -A INPUT -i lo -j ACCEPT
iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -A INPUT -p tcp --dport 22 -j ACCEPT
iptables -A INPUT -p tcp --dport 80 -j ACCEPT
iptables -A INPUT -p tcp --dport 443 -j ACCEPT
iptables -A INPUT -j DROP

# Save iptables rules
iptables-save > /etc/iptables/rules.v4

# root's crontab (if this host has one)
if [ -f /etc/pynomaly/crontab ]; then
    crontab /etc/pynomaly/crontab
fi
