"""Ways cameras come in besides the settings file: dnsmasq's DHCP hook and ONVIF
WS-Discovery."""
