"""Producer keys: what an upstream service producing requests straight to Kafka signs them with (admins
create, list and revoke them; see :mod:`shared.producer_keys`)."""
