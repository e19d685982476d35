# the same name again
connection "files" {
  type = "file"
}
