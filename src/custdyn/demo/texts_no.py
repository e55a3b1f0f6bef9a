"""Norwegian (bokmål) text bank for the demo world.

Same keys and slots as :mod:`custdyn.demo.texts_en`. Products are in the definite form
("kontorstolen"), so templates never need the noun's gender.
"""

from __future__ import annotations

BANK: dict = {
    "greet": [
        "Hei,", "Hei!", "Hallo,", "God morgen,", "Hei {vendor},", "Til kundeservice,",
        "Hei der,", "Hei igjen,", "Hei kundeservice,", "God dag,",
    ],
    "sign": [
        "Takk,\n{name}", "Mvh\n{name}", "Med vennlig hilsen\n{name}", "Hilsen\n{name}",
        "Vennlig hilsen\n{name}", "{name}", "Sendt fra min mobil", "Takk på forhånd,\n{name}",
        "Beste hilsen\n{name}",
    ],
    "agent_greet": ["Hei {name},", "Hei {name}!", "God dag {name},",
                    "Hei {name}, takk for at du tok kontakt."],
    "agent_sign": [
        "Med vennlig hilsen\n{agent}\n{vendor} Kundeservice", "Vennlig hilsen\n{agent}, {vendor}",
        "Mvh\n{agent}\n{vendor} Support", "Hilsen {agent}",
    ],
    "emotion": {
        "anger": [
            "Dette er rett og slett ikke akseptabelt.", "Jeg er skikkelig irritert over dette.",
            "Ærlig talt er jeg rasende.", "Dette er tredje gang, og nå er tålmodigheten slutt.",
            "Jeg er lei av å måtte mase på dere.", "Dette er helt uhørt.",
            "Jeg forventet mye bedre og er sint.",
        ],
        "disgust": [
            "Helt ærlig er det latterlig.", "Det føles som lureri.", "Dette er en skandale.",
            "Skammelig av en så stor nettbutikk.", "Det er rett og slett pinlig.",
        ],
        "fear": [
            "Jeg er redd det ikke kommer før helgen.", "Jeg frykter at dette skjer igjen.",
            "Jeg er nervøs for å bestille noe mer.", "Jeg er redd jeg har mistet pengene mine.",
            "Jeg er urolig fordi jeg trenger det til et arrangement.",
        ],
        "sadness": [
            "Jeg er veldig skuffet.", "Synd, jeg pleide å elske å handle hos dere.",
            "Dessverre ødela dette hele opplevelsen.", "Jeg føler meg ærlig talt sviktet.",
            "Det er trist, for selve produktene er fine.", "Dette gjør meg lei meg.",
        ],
        "surprise_neg": [
            "Jeg trodde ikke mine egne øyne.", "Jeg ble ærlig talt sjokkert.",
            "Dette hadde jeg ikke ventet av dere.", "For en ubehagelig overraskelse.",
        ],
        "joy": [
            "Jeg er kjempefornøyd!", "Det gjorde dagen min.", "Helt strålende!",
            "Veldig glad, tusen takk!", "For en flott opplevelse.", "Elsker det!",
            "Kunne ikke vært gladere.",
        ],
        "trust": [
            "Jeg vet at jeg kan stole på dere.", "Det er derfor jeg kommer tilbake.",
            "Dere har fått en lojal kunde.", "Jeg anbefaler dere gjerne til venner.",
            "Godt å vite at noen faktisk lytter.", "Jeg stoler på at dere ordner dette.",
        ],
        "surprise_pos": [
            "For en hyggelig overraskelse!", "Jeg hadde ikke ventet så raskt svar.",
            "Wow, det gikk fort!", "Jeg ble positivt overrasket.",
        ],
        "anticipation": [
            "Ser frem til å høre fra dere.", "Gleder meg til å se det.",
            "Håper på svar snart.", "Gleder meg til å prøve det.",
            "Ser frem til neste oppdatering.",
        ],
    },
    "theme": {
        "late_delivery": [
            "Bestillingen min {order_no} kom {days} dager for sent.",
            "{product} skulle komme på mandag, og nå er leveransen {days} dager forsinket.",
            "Ordre {order_no} har fortsatt ikke kommet, {days} dager etter lovet dato.",
            "Leveringen var forsinket igjen, {days} dager denne gangen.",
            "Jeg har ventet {days} dager lenger enn lovet på {product}.",
            "Sporingen på {order_no} har stått stille i flere dager, og leveringen er {days} dager for sen.",
            "Dere lovet levering innen tre dager, men {product} brukte {days} dager ekstra.",
            "Alle leveranser fra dere er forsinket for tiden; ordre {order_no} kom {days} dager for sent.",
        ],
        "damaged_goods": [
            "{product} kom i stykker.", "{product} hadde en stor sprekk ved levering.",
            "Ordre {order_no} kom skadet, esken var knust og {product} hadde bulker.",
            "Det manglet deler da jeg åpnet pakken med {product}.",
            "Halvparten av ordre {order_no} var knust ved levering.",
            "{product} jeg fikk, har riper over alt.",
            "Emballasjen var revet i stykker og {product} inni var ødelagt.",
        ],
        "price": [
            "Prisene deres har gått kraftig opp i det siste.",
            "{amount} for {product} er altfor dyrt.",
            "Fraktkostnaden er altfor høy for små bestillinger.",
            "Jeg betaler mer hos dere enn andre steder for nøyaktig det samme.",
            "Prisene stiger hele tiden mens servicen blir dårligere.",
            "Ærlig talt er {amount} mye mer enn {product} er verdt.",
            "Butikken deres har blitt for dyr for en liten bedrift som vår.",
        ],
        "missing_feature": [
            "Jeg skulle ønske jeg kunne sette opp {feature}.",
            "Finnes det virkelig ingen mulighet for {feature}?",
            "Vær så snill og legg til {feature}, jeg bestiller det samme hver måned.",
            "Det eneste jeg savner er {feature}.",
            "Det ville spart meg for mye tid om nettbutikken hadde {feature}.",
            "Har dere planer om {feature}? Jeg glemmer alltid å bestille på nytt.",
            "Jeg ville bestilt oftere hvis dere hadde {feature}.",
        ],
        "app_bug": [
            "Appen krasjer hver gang jeg prøver å betale.",
            "Appen deres fryser i kassen, og jeg mister handlekurven.",
            "Jeg får ikke fullført bestillingen i appen, den lukker seg når jeg trykker på «Betal».",
            "Appen logger meg ut midt i betalingen.",
            "Etter siste oppdatering krasjer appen når jeg åpner handlekurven.",
            "Knappen for å gå til kassen i appen gjør ingenting.",
            "Appen trakk pengene fra kortet, men viste en feilmelding og ingen ordre ble opprettet.",
        ],
        "staff_praise": [
            "{staff} i kundeservice var fantastisk.",
            "Jeg vil takke {staff}, som løste problemet mitt på noen minutter.",
            "{staff} var så hjelpsom og hyggelig på telefonen.",
            "Stor takk til {staff} for at hun gjorde det lille ekstra.",
            "{staff} forklarte alt tydelig og fikset det med en gang.",
            "Gi gjerne beskjed til {staff} om at jeg er veldig fornøyd, strålende service.",
            "{staff} fortjener lønnsøkning, ærlig talt den beste kundeservicen jeg har fått.",
        ],
    },
    "theme_extra": {
        "late_delivery": [
            "Jeg trengte det til {weekday}.", "Ingen sa ifra om forsinkelsen.",
            "Sporingssiden sier bare «under transport».",
            "Jeg måtte ta fri en hel dag for å vente.",
        ],
        "damaged_goods": [
            "Bilder er vedlagt.", "Jeg vil ha en ny, ikke et tilgodebevis.",
            "Esken så ut som den hadde blitt mistet i bakken.", "Den kan ikke brukes slik den er.",
        ],
        "price": [
            "Jeg har vært kunde i mange år.", "Andre butikker har gratis frakt.",
            "Det er vanskelig å forsvare prisen lenger.", "En lojalitetsrabatt hadde hjulpet.",
        ],
        "missing_feature": [
            "De fleste butikker har dette nå.", "Jeg ville til og med betalt litt for det.",
            "Det ville gjort hverdagen mye enklere.",
            "Vi bestiller det samme kontorrekvisitaet hver uke.",
        ],
        "app_bug": [
            "Jeg har nyeste versjon.", "Jeg har installert appen på nytt to ganger.",
            "Det skjer både på mobilen og nettbrettet.", "Nettsiden fungerer, men ikke appen.",
        ],
        "staff_praise": [
            "Jeg kommer definitivt til å handle igjen.", "Sånn service er sjelden.",
            "Det reddet dagen min.", "Hun kan virkelig faget sitt.",
        ],
    },
    "question": [
        "Kan dere si når ordre {order_no} blir sendt?",
        "Finnes {product} i en annen farge?",
        "Kan jeg endre leveringsadressen for ordre {order_no}?",
        "Leverer dere på lørdager?", "Hvordan laster jeg ned fakturaen for ordre {order_no}?",
        "Kan jeg legge til noe i bestillingen jeg allerede har lagt inn?",
        "Hvor lang garanti er det på {product}?",
        "Jeg vil oppdatere fakturaopplysningene på kontoen min.",
        "Kan jeg hente ordre {order_no} i butikken i stedet?",
        "Gir dere mengderabatt til bedrifter?",
        "Kan dere sende meg kvittering med MVA for forrige bestilling?",
        "Når er {product} tilbake på lager?",
    ],
    "order_note": [
        "Sett pakken utenfor døra.", "Lever etter kl. 16, takk.", "Ring på to ganger.",
        "Gaveinnpakning hvis mulig.", "Kontoret stenger kl. 17.", "Ring før levering.",
        "Lever til naboen hvis jeg ikke er hjemme.",
    ],
    "return_damaged": [
        "Retur: kom i stykker.", "Returnerer, skadet under transport.",
        "Sender tilbake {product}, som var sprukket.", "Skadet ved levering, ønsker refusjon.",
    ],
    "return_other": [
        "Ombestemte meg.", "Feil størrelse.", "Ikke som på bildet.", "Bestilte ved en feil.",
        "Fargen passer ikke.", "Trenger det ikke lenger.",
    ],
    "followup": [
        "Jeg venter fortsatt på svar.", "Det har gått flere dager uten svar.",
        "Kan noen være så snill å svare meg?",
        "Purrer igjen, fortsatt ikke svar på sak {ticket_no}.",
        "Leser noen disse meldingene?",
    ],
    "reopen": [
        "Problemet er tilbake.", "Dette ble ikke løst likevel.",
        "Det skjedde igjen med neste bestilling.", "Dessverre er feilen der fortsatt.",
        "Løsningen deres fungerte ikke.",
    ],
    "thanks": [
        "Takk, det løste saken.", "Flott, tusen takk for rask hjelp!",
        "Perfekt, setter stor pris på det.", "Tusen takk, alt er i orden nå.",
        "Supert, takk skal dere ha.",
    ],
    "agent_first": [
        "Takk for at du tok kontakt.", "Takk for meldingen.", "Beklager det som har skjedd.",
        "Takk for at du sa ifra.", "Beklager bryderiet.",
    ],
    "agent_topic": {
        "late_delivery": [
            "Jeg har sjekket ordre {order_no} med transportøren, og den leveres i morgen.",
            "Vi har refundert fraktkostnaden for {order_no} som en unnskyldning for forsinkelsen.",
            "Transportøren hadde etterslep; pakken din er nå på vei.",
        ],
        "damaged_goods": [
            "Jeg har ordnet en erstatning, den sendes i dag.",
            "Du får full refusjon på {amount} innen fem virkedager.",
            "Du kan beholde den skadde varen; en ny er på vei.",
        ],
        "app_bug": [
            "Utviklerne våre kjenner til krasjet i kassen, og en rettelse kommer denne uken.",
            "Oppdater appen til nyeste versjon, da skal feilen være borte.",
            "I mellomtiden har jeg lagt inn bestillingen manuelt for deg.",
        ],
        "missing_feature": [
            "Faste bestillinger finnes ikke ennå, men jeg har sendt ønsket ditt videre til produktteamet.",
            "Godt forslag; jeg har registrert stemmen din på ønsket.",
        ],
        "question": [
            "Ordre {order_no} sendes innen to virkedager.",
            "Jeg har oppdatert opplysningene på kontoen din.",
            "Du finner fakturaen under «Mine ordre» på nettsiden.",
            "Ja, det går fint; jeg har gjort endringen for deg.",
        ],
        "price": [
            "Jeg har lagt inn en rabattkode på 10 % på kontoen din til neste bestilling.",
            "Bestillinger over {amount} får gratis frakt.",
        ],
    },
    "agent_escalate": [
        "Jeg har sendt saken videre til logistikkavdelingen.",
        "Jeg har gitt saken til lederen min, som tar kontakt med deg.",
        "Dette trenger en spesialist; saken er eskalert.",
    ],
    "agent_close": [
        "Si ifra om det er noe mer.", "Ha en fin dag!", "Ta gjerne kontakt igjen.",
        "Takk for tålmodigheten.",
    ],
    "sales_pitch": [
        "Som avtalt på telefonen sender jeg tilbudet på {product}.",
        "Jeg vil gjerne vise hvordan {vendor} kan levere til kontoret deres til en god pris.",
        "Som lovet sender jeg prislisten og vilkårene for bedriftskonto.",
        "Vi leverer nå neste dag i hele landet; passer det med et kort møte?",
        "Takk for interessen for {vendor}; vedlagt er et tilbud på {product}.",
    ],
    "sales_reply": [
        "Takk for tilbudet, vi ser på det denne uken.",
        "Kan dere ta med fraktkostnad i tilbudet?",
        "Høres interessant ut, kan vi møtes neste tirsdag?",
        "Vi sammenligner noen leverandører; hvor raskt kan dere levere?",
        "Takk, jeg tar det opp med kollegene mine og kommer tilbake til deg.",
    ],
    "sales_subject": ["Ditt tilbud fra {vendor}", "Tilbud: {product}", "Oppfølging etter samtalen",
                      "Bedriftskonto hos {vendor}", "Neste steg"],
    "crm_call": [
        "Første samtale, interessert i {product}. Send prisliste.",
        "Oppfølgingssamtale, spurte om leveringstider.",
        "Ringte for å diskutere tilbudet; ønsker mengderabatt.",
        "Kort samtale, beslutning ventes neste uke.",
        "La igjen talebeskjed, prøver igjen torsdag.",
    ],
    "crm_meeting": [
        "Møte med kontorsjefen, gikk gjennom katalogen.",
        "Demo av nettbutikken og appen; positiv mottakelse.",
        "Møte om vilkår; de ønsker 30 dagers faktura.",
    ],
    "crm_visit": [
        "Besøkte kontoret deres, hadde med prøver av {product}.",
        "Befaring, målte opp lokalet for nye møbler.",
    ],
    "crm_onboarding": [
        "Velkomstsamtale, forklarte bestilling og faktura.",
        "Oppstartsmøte, satte opp bedriftskontoen.",
    ],
    "crm_winback": [
        "Ringte for å vinne kunden tilbake, tilbød {offer}; kunden vil prøve igjen.",
        "Ringte inaktiv kunde med {offer}; la inn ny bestilling.",
    ],
    "crm_cancel": [
        "Kunden har sagt opp abonnementet. Årsak: {reason}.",
        "Abonnement sagt opp på telefon; sa at {reason}.",
        "Oppsigelse mottatt. {reason}.",
    ],
    "crm_lost": [
        "Kunden valgte en annen leverandør.", "Ikke budsjett i år, lukker leadet.",
        "Ingen svar etter tre forsøk, lead lukket.",
    ],
    "cancel_reason": ["det er for dyrt", "de bytter leverandør", "misfornøyd med leveransene",
                      "trenger det ikke lenger", "appen svikter hele tiden"],
    "switch": [
        "Jeg vurderer å gå over til {competitor}, de tilbød meg {offer}.",
        "{competitor} gir {offer}, så jeg bytter nok.",
        "Hvis ingenting endrer seg, begynner jeg å handle hos {competitor} i stedet.",
        "En venn anbefalte {competitor}; de er billigere og raskere, så jeg slutter hos dere.",
        "Jeg har allerede opprettet konto hos {competitor}.",
        "{competitor} har nettopp tilbudt meg {offer}; gi meg en grunn til å bli.",
    ],
    "compare": [
        "Jeg så at {competitor} selger det samme billigere.",
        "Kan dere matche prisen {competitor} har?",
        "{competitor} leverer raskere, bare så dere vet det.",
        "Jeg så en reklame fra {competitor} med {offer}.",
    ],
    "positive": [
        "Alt kom i tide og godt pakket.", "Knallgod kvalitet, som alltid.",
        "Rask levering og hyggelig service.", "{product} er akkurat det jeg trengte.",
        "Det var raskt og enkelt å bestille.", "Veldig fornøyd med siste bestilling.",
    ],
    "neutral_feedback": [
        "Bestillingen kom.", "Leveringen gikk greit.", "{product} er helt ok.",
        "Ikke noe spesielt å melde.", "Den gjør jobben.",
    ],
    "survey": {
        "positive": ["Supert service.", "Alltid pålitelige.", "Raske og hyggelige.",
                     "Veldig fornøyd.", "Fortsett sånn!"],
        "neutral": ["Helt ok.", "Middels.", "Greit nok, ikke noe spesielt.",
                    "Noe kunne vært bedre."],
        "negative": ["Leveringene tar altfor lang tid.", "For dyrt.", "Kundeservice svarer aldri.",
                     "Ikke fornøyd i det hele tatt.", "Skuffende."],
    },
    "chat_out": [
        "Hei {name}, det er {agent}. Hva kan jeg hjelpe med?", "Et øyeblikk, jeg sjekker det.",
        "Takk for at du ventet.", "Er det noe annet jeg kan hjelpe med?",
        "Nå er det ordnet.",
    ],
    "subject": {
        "late_delivery": ["Hvor er ordre {order_no}?", "Forsinket levering",
                          "Ordre {order_no} forsinket", "Venter fortsatt på pakken"],
        "damaged_goods": ["Skadet vare", "Ordre {order_no} kom i stykker", "Ødelagt vare"],
        "app_bug": ["Appen krasjer i kassen", "Problem med appen", "Får ikke betalt i appen"],
        "missing_feature": ["Ønske om funksjon", "Faste bestillinger?", "Forslag"],
        "question": ["Spørsmål om ordre {order_no}", "Kort spørsmål", "Faktura",
                     "Leveringsadresse"],
        "price": ["Priser", "Fraktkostnad", "Spørsmål om pris"],
        "feedback": ["Tilbakemelding", "Min erfaring", "Noen ord om servicen deres"],
        "switch": ["Vurderer å slutte", "Prisene deres mot {competitor}", "Kontoen min"],
    },
    "quote": "Den {date} skrev {name}:",
    "re": "SV:",
    "money": "{v} euro",
    "months": ["jan.", "feb.", "mar.", "apr.", "mai", "jun.", "jul.", "aug.", "sep.", "okt.",
               "nov.", "des."],
    "date_fmt": "{day}. {month} {year} kl. {time}",
    "weekdays": ["mandag", "tirsdag", "onsdag", "torsdag", "fredag", "lørdag"],
    "products": ["skrivebordslampen", "kontorstolen", "kaffemaskinen", "skrivebordet",
                 "skriverpapiret", "tastaturet", "oppbevaringsboksen", "tavla", "bokhylla",
                 "skjermarmen", "vannkokeren", "krussettet", "tonerkassetten", "arkivskapet"],
    "features": ["faste bestillinger", "planlagte månedlige leveranser",
                 "automatisk etterbestilling", "et abonnement på det jeg kjøper hver måned"],
    "offers": ["15 % rabatt", "gratis frakt i et år", "20 % velkomstrabatt",
               "levering neste dag uten ekstra kostnad", "bedre pris på store bestillinger"],
}
