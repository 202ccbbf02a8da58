# Convenience wrappers; ./twokey needs nothing but a POSIX shell.
.PHONY: run test
run:
	./twokey run
test:
	./twokey test
