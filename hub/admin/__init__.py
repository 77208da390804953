"""The admin API: the server and its routes (server, subscription_routes, bodies), its token
(token), runtime subscriptions kept in Kafka (store), and a client of it (client)."""
