# The fans' identity provider: an Amazon Cognito user pool and the app
# client fans sign in through. Cognito signs ID tokens with RS256 and
# publishes its keys; both services verify every fan's token against them
# (ONSALE__IDENTITY__*), taking the fan's id from the token's `sub`.
resource "aws_cognito_user_pool" "fans" {
  name                     = "${local.name}-fans"
  username_attributes      = ["email"]
  auto_verified_attributes = ["email"]
  deletion_protection      = var.environment == "prod" ? "ACTIVE" : "INACTIVE"

  password_policy {
    minimum_length    = 10
    require_lowercase = true
    require_uppercase = true
    require_numbers   = true
    require_symbols   = false
  }

  account_recovery_setting {
    recovery_mechanism {
      name     = "verified_email"
      priority = 1
    }
  }
}

# The fans' app is a public client (a browser or phone keeps no secret);
# its client id is the audience (`aud`) of the ID tokens it obtains.
resource "aws_cognito_user_pool_client" "fans" {
  name                          = "${local.name}-fans"
  user_pool_id                  = aws_cognito_user_pool.fans.id
  generate_secret               = false
  explicit_auth_flows           = ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
  prevent_user_existence_errors = "ENABLED"
  supported_identity_providers  = ["COGNITO"]

  # An on-sale lasts well under an hour per fan; the app refreshes the ID
  # token with the refresh token when it lapses.
  id_token_validity      = 60
  access_token_validity  = 60
  refresh_token_validity = 30
  token_validity_units {
    id_token      = "minutes"
    access_token  = "minutes"
    refresh_token = "days"
  }
}

locals {
  # Cognito's issuer identifier is https://cognito-idp.<region>.amazonaws.com/<pool id>
  # (the pool's `endpoint` without the scheme); its discovery document
  # names the JWK Set, which is also given explicitly so the services skip
  # discovery.
  identity_issuer   = "https://${aws_cognito_user_pool.fans.endpoint}"
  identity_jwks_url = "https://${aws_cognito_user_pool.fans.endpoint}/.well-known/jwks.json"
  identity_audience = aws_cognito_user_pool_client.fans.id
}
