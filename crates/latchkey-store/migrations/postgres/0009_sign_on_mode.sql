-- An app's sign-on mode (Okta's signOnMode); `sign_on` holds that mode's settings.signOn.
ALTER TABLE apps ADD COLUMN sign_on_mode TEXT NOT NULL DEFAULT 'SAML_2_0';
