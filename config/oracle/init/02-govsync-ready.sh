# Sourced by the Oracle Free container after 01-govsync-user.sql, at its
# first start only. The marker lives in the data volume, so it survives
# restarts; docker-compose.yml's healthcheck waits for it, so nothing
# connects as govsync before the user exists.
touch /opt/oracle/oradata/.govsync-init-done
