-- Contacts are the candidates (job seekers) of the staffing business.
with source as (
    select * from {{ source('salesforce', 'contact') }}
),

renamed as (
    select
        cast(id as {{ dtype('string') }}) as candidate_id,
        cast(last_name as {{ dtype('string') }}) as family_name,
        cast(first_name as {{ dtype('string') }}) as given_name,
        cast(last_name_kana__c as {{ dtype('string') }}) as family_name_kana,
        cast(first_name_kana__c as {{ dtype('string') }}) as given_name_kana,
        cast(email as {{ dtype('string') }}) as email,
        cast(mobile_phone as {{ dtype('string') }}) as mobile_phone,
        cast(birthdate as {{ dtype('date') }}) as birth_date,
        cast(mailing_state as {{ dtype('string') }}) as prefecture,
        cast(mailing_city as {{ dtype('string') }}) as city,
        cast(desired_occupation__c as {{ dtype('string') }}) as desired_occupation,
        cast(years_of_experience__c as {{ dtype('int') }}) as years_of_experience,
        cast(license_number__c as {{ dtype('string') }}) as license_number,
        cast(is_active__c as {{ dtype('bool') }}) as is_active,
        cast(lead_source as {{ dtype('string') }}) as lead_source,
        cast(created_date as {{ dtype('timestamptz') }}) as created_at,
        cast(last_modified_date as {{ dtype('timestamptz') }}) as updated_at,
        cast(system_modstamp as {{ dtype('timestamptz') }}) as system_modstamp
    from source
    where not is_deleted
)

select * from renamed
