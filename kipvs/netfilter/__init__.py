"""The netfilter half of the service proxy: masquerade, hairpin, the service-address firewall and
loadBalancerSourceRanges, as iptables rules in chains kipvs owns (KIPVS-*)."""
