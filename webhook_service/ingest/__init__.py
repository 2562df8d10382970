"""Where deliveries come in: the signed webhook endpoint, a webhook proxy (smee), and
replay of recorded deliveries."""
