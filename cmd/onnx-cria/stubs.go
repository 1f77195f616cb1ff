package main

// Commands still being built: each reports so plainly instead of pretending.
