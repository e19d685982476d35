connection "files" {
  type = "fiel"
  path = "data"
}
