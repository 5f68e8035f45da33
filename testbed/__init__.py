"""The test bed: a private Tor network on loopback plus an edge web server that treats each exit differently."""
